"""Build TensorRT engines from an exported model folder, for GPUs with TensorRT 10.

    python export/to_tensorrt.py --model-dir DIR [--fp16] [--max-batch 64] [--max-tokens 128]
                                 [--workspace-gb 4]

Checks every graph against TensorRT's documented ONNX support first (export/tensorrt_support.py),
then writes ``audio.<precision>.plan`` and ``text.<precision>.plan`` (fp32, or fp16 with
``--fp16``), and ``floor.<precision>.plan`` for a family with a floor graph (TTMR++), and
records them in ``manifest.json`` under ``tensorrt``. Profiles bound the batch (rows per
call) only: a track's windows may go into any number of calls, so no profile limits a
track's length. TensorRT's timing cache
is kept in ``tensorrt.timing.cache`` so that rebuilding is faster. An engine runs only on the
GPU model and TensorRT version that built it.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import onnx

from export.command import EXPECTED, run_command, say
from export.tensorrt_support import check
from runtime.engines.tensorrt import INSTALL_HINT, Shape, device_name
from runtime.manifest import Engines, Manifest, TextTower, read_manifest, write_manifest

TIMING_CACHE = "tensorrt.timing.cache"


class BuildError(RuntimeError):
    """A graph TensorRT does not support, or a build that failed."""


def plan_name(tower: str, precision: str) -> str:
    return f"{tower}.{precision}.plan"


def token_range(text: TextTower, max_tokens: int) -> tuple[int, int]:
    """The text engine's token lengths: exactly ``max_length`` where the runtime pads every
    text to it (folders exported before every family padded to the longest text), else 1 up
    to ``max_tokens`` (capped at the tokenizer's truncation)."""
    if text.padding == "max_length":
        return text.max_length, text.max_length
    return 1, min(max_tokens, text.max_length)


def profile_shapes(
    manifest: Manifest, tower: str, max_batch: int, max_tokens: int
) -> dict[str, tuple[Shape, Shape, Shape]]:
    """``{input: (min, opt, max)}`` for one tower's optimisation profile, from the manifest's
    input shapes: dimension 0 is the batch (1 to ``max_batch``), a fixed dimension stays
    fixed, and the text inputs' symbolic length spans ``token_range``. Kernels are tuned for
    the largest shapes (opt = max), where a GPU's time goes."""
    section = manifest.tower(tower)
    profile = {}
    for spec in section.inputs:
        low, high = [1], [max_batch]
        for dim in spec.shape[1:]:
            if isinstance(dim, int):
                low.append(dim)
                high.append(dim)
            elif tower == "text":
                shortest, longest = token_range(section, max_tokens)
                low.append(shortest)
                high.append(longest)
            else:
                raise ValueError(f"{tower} input {spec.name}: dimension {dim!r} is not fixed")
        profile[spec.name] = (tuple(low), tuple(high), tuple(high))
    return profile


def record_engines(
    manifest: Manifest,
    precision: str,
    max_batch: int,
    max_tokens: int,
    version: str,
    device: str | None,
) -> Manifest:
    """The manifest with ``tensorrt[precision]`` recording the engines and what they accept
    (``max_tokens`` is the text engine's real limit, ``token_range``'s upper end)."""
    engines = Engines(
        audio=plan_name("audio", precision),
        text=plan_name("text", precision),
        floor=plan_name("floor", precision) if manifest.floor else None,
        max_batch=max_batch,
        max_tokens=token_range(manifest.text, max_tokens)[1],
        tensorrt=version,
        device=device,
    )
    return manifest.replace(tensorrt={**manifest.tensorrt, precision: engines})


def graph_files(
    model_dir: Path, manifest: Manifest, fp16: bool
) -> tuple[dict[str, Path], Manifest]:
    """The ONNX graphs to build from, writing the FP16 ones first where they are missing."""
    if fp16 and manifest.fp16 is None:
        from export.fp16 import write_fp16_graphs

        say("No FP16 graphs yet: writing them (export/fp16.py) …")
        manifest = write_fp16_graphs(model_dir)
    names = manifest.graph_files("fp16" if fp16 else "fp32")
    return {graph: model_dir / names[graph] for graph in manifest.graphs}, manifest


def check_graphs(graphs: dict[str, Path]) -> None:
    """Refuses, listing every node, a graph with anything TensorRT 10 does not support."""
    say("Checking the graphs against TensorRT 10's ONNX operator support …")
    refused = []
    for path in graphs.values():
        report = check(onnx.load(str(path)))
        refused += [f"  {path.name}: {problem}" for problem in report.problems]
        if report.float64_nodes:
            say(
                f"  {path.name}: {len(report.float64_nodes)} nodes compute in float64; "
                "TensorRT casts DOUBLE down to float32 there"
            )
    if refused:
        raise BuildError("TensorRT 10 does not support these nodes:\n" + "\n".join(refused))
    say(f"  {', '.join(p.name for p in graphs.values())}: every node is supported")


def build_engine(
    trt,
    graph: Path,
    plan: Path,
    profile: dict[str, tuple[Shape, Shape, Shape]],
    fp16: bool,
    workspace_gb: float,
    cache: Path,
) -> None:
    """Parse, configure and build one engine into ``plan``: the only part that needs
    TensorRT (and a GPU), kept to the documented builder calls."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # FP16 graphs are built strongly typed: TensorRT keeps every tensor's ONNX type, so the
    # float32 islands of the FP16 graph stay float32.
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if fp16 else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(graph)):
        errors = "\n".join(f"  {parser.get_error(i)}" for i in range(parser.num_errors))
        raise BuildError(f"TensorRT could not parse {graph.name}:\n{errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * 2**30))
    # No TF32 (on by default): fp32 engines must match the reference to cosine 0.99999, and
    # the float32 parts of an FP16 graph are float32 for accuracy too.
    config.clear_flag(trt.BuilderFlag.TF32)
    shapes = builder.create_optimization_profile()
    for name, (low, opt, high) in profile.items():
        shapes.set_shape(name, low, opt, high)
    config.add_optimization_profile(shapes)
    timing = config.create_timing_cache(cache.read_bytes() if cache.is_file() else b"")
    config.set_timing_cache(timing, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError(f"TensorRT could not build {graph.name} (its log above says why)")
    with plan.open("wb") as out:
        out.write(serialized)
    with cache.open("wb") as out:
        out.write(config.get_timing_cache().serialize())


def build_engines(trt, args: argparse.Namespace, manifest: Manifest) -> Manifest:
    """Check, build every engine, record them; returns the new manifest."""
    precision = "fp16" if args.fp16 else "fp32"
    graphs, manifest = graph_files(args.model_dir, manifest, args.fp16)
    check_graphs(graphs)
    cache = args.model_dir / TIMING_CACHE
    say(f"TensorRT {trt.__version__}; timing cache {cache}")
    for tower, graph in graphs.items():
        profile = profile_shapes(manifest, tower, args.max_batch, args.max_tokens)
        plan = args.model_dir / plan_name(tower, precision)
        ranges = ", ".join(f"{name} {low}..{high}" for name, (low, _, high) in profile.items())
        say(f"Building the {tower} engine ({precision}) from {graph.name}: {ranges} …")
        started = time.perf_counter()
        build_engine(trt, graph, plan, profile, args.fp16, args.workspace_gb, cache)
        size = plan.stat().st_size / 2**20
        say(f"  {plan} in {time.perf_counter() - started:.0f} s, {size:.0f} MiB")
    manifest = record_engines(
        manifest, precision, args.max_batch, args.max_tokens, trt.__version__, device_name()
    )
    say(f"Manifest → {write_manifest(args.model_dir, manifest)} (tensorrt.{precision})")
    return manifest


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="to_tensorrt.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="folder from to_onnx.py")
    parser.add_argument(
        "--fp16", action="store_true", help="build from the FP16 graphs (strongly typed)"
    )
    parser.add_argument(
        "--max-batch", type=int, default=64, help="most rows per call (%(default)s)"
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=128,
        help="most tokens per text, capped at the tokenizer's max_length (%(default)s)",
    )
    parser.add_argument(
        "--workspace-gb", type=float, default=4, help="TensorRT workspace (%(default)s GiB)"
    )
    args = parser.parse_args(argv)
    if args.max_batch < 1 or args.max_tokens < 1 or args.workspace_gb <= 0:
        parser.error("--max-batch, --max-tokens and --workspace-gb must be positive")
    return args


def build(args: argparse.Namespace) -> None:
    manifest = read_manifest(args.model_dir)
    try:
        import tensorrt as trt
    except ImportError:
        raise BuildError(f"TensorRT is not installed: {INSTALL_HINT}") from None
    build_engines(trt, args, manifest)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command("to_tensorrt.py", partial(build, args), (BuildError, *EXPECTED))


if __name__ == "__main__":
    sys.exit(main())
