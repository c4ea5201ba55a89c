"""Export a two-tower model to ONNX: ``audio.onnx`` (mel frontend fused), ``text.onnx``, the
tokenizer and a manifest; for TTMR++ also ``floor.onnx`` (each window's log-mel floor).

    python export/to_onnx.py --checkpoint X.pth --config X.yaml [--text-arch DIR] --output DIR
    python export/to_onnx.py --family clap --hf-model DIR --output DIR
    python export/to_onnx.py --family clap --checkpoint X.pt --text-arch DIR --output DIR
    python export/to_onnx.py [--family clap] --demo --output DIR  # offline: random weights
    … --quantize int8                                 # also write INT8 graphs (CPU)
    … --fp16                                          # also write FP16 graphs (GPU)

The family (``export.families``) loads the model and exports its graphs; this module never
names one. Both graphs are then validated in ONNX Runtime against the reference: outside the
family's tolerance the export fails (exit 2, one line naming the tower, the output and the
error) and writes no ``manifest.json``, which is written last.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import transformers

from export.checkpoint import CheckpointError, sha256
from export.command import EXPECTED, run_command, say
from export.families import DEFAULT, REGISTRY, Family, Source, Tolerance, all_families, family
from export.fp16 import write_fp16_graphs
from export.onnx_export import OPSET, OUTPUTS, export_graph, graph_names
from export.quantize import cosines, quantize_model
from runtime.manifest import FILE, FORMAT, RANDOM_WEIGHTS_NOTE, Manifest, write_manifest

LIBRARIES = ("torch", "transformers", "onnx", "onnxscript", "onnxruntime", "tokenizers", "numpy")
ONNX_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64"}
FLOOR_FILE = "floor.onnx"


def describe(values) -> list[dict]:
    """Names, dtypes and shapes (symbolic dims by name) of graph inputs or outputs."""
    return [
        {
            "name": value.name,
            "dtype": ONNX_DTYPES[value.type.tensor_type.elem_type],
            "shape": [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim],
        }
        for value in values
    ]


def write_tokenizer(model, max_length: int, path: Path) -> None:
    """The fast tokenizer's own ``tokenizer.json``, truncating at ``max_length``, no padding
    (the runtime pads): loadable by ``tokenizers`` alone."""
    backend = model.tokenizer.backend_tokenizer
    backend.no_padding()
    backend.enable_truncation(max_length=max_length)
    backend.save(str(path))


class ValidationError(ValueError):
    """The exported graphs are further from the reference than the family allows."""


def validate(model, window_samples: int, output: Path) -> dict:
    """Optimum-style check: run both graphs in ONNX Runtime against the reference; per
    tower and output, ``max_abs`` |Δ|, the largest |reference| value and the least row
    cosine."""
    options = {"providers": ["CPUExecutionProvider"]}
    audio = ort.InferenceSession(str(output / "audio.onnx"), **options)
    text = ort.InferenceSession(str(output / "text.onnx"), **options)
    rng = np.random.default_rng(0)
    # Two windows of one track, the second louder: its floor is the track's.
    windows = (rng.standard_normal((2, window_samples)) * [[0.1], [0.3]]).astype(np.float32)
    ref = model.audio_encode(torch.from_numpy(windows))
    feed = {"waveform": windows}
    if (output / FLOOR_FILE).is_file():
        floors = ort.InferenceSession(str(output / FLOOR_FILE), **options).run(None, feed)[0]
        feed["floor"] = np.full(len(windows), floors.max(), np.float32)
    report = {"audio": max_errors(ref, audio.run(list(OUTPUTS), feed))}
    tokens = model.tokenize(["a calm solo piano piece in D", "distorted guitars, fast drums"])
    ref = model.text_encode_ids(tokens["input_ids"], tokens["attention_mask"])
    feed = {value.name: tokens[value.name].numpy() for value in text.get_inputs()}
    report["text"] = max_errors(ref, text.run(list(OUTPUTS), feed))
    return report


def max_errors(reference, exported) -> dict:
    result = {}
    for name, ref, got in zip(OUTPUTS, reference, exported, strict=True):
        ref = ref.detach().numpy()
        cos = cosines(ref, got)
        result[name] = {
            "max_abs": float(np.abs(ref - got).max()),
            "max_reference": float(np.abs(ref).max()),
            "min_cosine": float(cos.min()),
        }
    return result


def check_tolerance(report: dict, tolerance: Tolerance) -> None:
    """A ``ValidationError`` naming every tower and output of ``report`` outside
    ``tolerance``, on one line."""
    misses = []
    for tower, outputs in report.items():
        for name, err in outputs.items():
            relative = err["max_abs"] / max(err["max_reference"], np.finfo(np.float32).tiny)
            if not err["min_cosine"] >= tolerance.min_cosine:
                misses.append(
                    f"{tower} {name}: cosine {err['min_cosine']:.8f} "
                    f"below the tolerance {tolerance.min_cosine}"
                )
            if not relative <= tolerance.max_relative:
                misses.append(
                    f"{tower} {name}: max |Δ| {err['max_abs']:.2e} is {relative:.2e} × max "
                    f"|reference|, over the tolerance {tolerance.max_relative:g}"
                )
    if misses:
        raise ValidationError(
            "the exported graphs do not match the reference: " + "; ".join(misses)
        )


def export_model(name: str, source: Source, output: Path, random_weights: bool) -> Manifest:
    """Load the model of family ``name`` from ``source`` and export both towers into
    ``output``; returns the manifest."""
    chosen = family(name)
    say(f"Loading the {chosen.title} model: {source}")
    loaded = chosen.load(source)
    return export_reference(loaded.reference, chosen, loaded.weights, output, random_weights)


def export_reference(
    model, exporter: Family, checkpoint: Path, output: Path, random_weights: bool
) -> Manifest:
    """Export both towers of a loaded reference of the family ``exporter`` into ``output``;
    returns the manifest. ``checkpoint`` is the weights file whose sha256 the manifest
    records."""
    output.mkdir(parents=True, exist_ok=True)
    (output / FILE).unlink(missing_ok=True)  # written last: a failed export leaves none
    settings = exporter.settings(model)
    graphs = {}
    (output / FLOOR_FILE).unlink(missing_ok=True)  # from an earlier export of another family
    for name in graph_names(exporter):
        started = time.perf_counter()
        path = output / f"{name}.onnx"
        say(f"Exporting the {name} graph → {path} …")
        graphs[name] = export_graph(name, exporter, model, settings, path)
        size = path.stat().st_size / 2**20
        say(f"  done in {time.perf_counter() - started:.1f} s, {size:.0f} MiB, checked")
    write_tokenizer(model, settings["text"]["max_length"], output / "tokenizer.json")
    say(f"Tokenizer → {output / 'tokenizer.json'}")
    floor = {}
    if "floor" in graphs:
        floor["floor"] = {
            "file": FLOOR_FILE,
            "inputs": describe(graphs["floor"].graph.input),
            "outputs": describe(graphs["floor"].graph.output),
        }
    manifest = Manifest.from_json(
        {
            "format": FORMAT,
            "family": exporter.name,
            "random_weights": random_weights,
            "note": RANDOM_WEIGHTS_NOTE if random_weights else "",
            "hparams": settings["hparams"],
            "audio": {
                "file": "audio.onnx",
                **settings["audio"],
                "inputs": describe(graphs["audio"].graph.input),
                "outputs": describe(graphs["audio"].graph.output),
            },
            "text": {
                "file": "text.onnx",
                "tokenizer": "tokenizer.json",
                **settings["text"],
                "inputs": describe(graphs["text"].graph.input),
                "outputs": describe(graphs["text"].graph.output),
            },
            **floor,
            "opset": OPSET,
            "checkpoint": {
                "file": checkpoint.name,
                "sha256": sha256(checkpoint),
                **settings.get("checkpoint", {}),
            },
            # The modules' own versions: a GPU wheel installed over the CPU one (pip --target)
            # leaves the CPU package's metadata, which would name the wrong build.
            "versions": {lib: importlib.import_module(lib).__version__ for lib in LIBRARIES},
        }
    )
    say("Validating against the PyTorch reference (ONNX Runtime, CPU):")
    report = validate(model, manifest.audio.window_samples, output)
    for tower, outputs in report.items():
        for name, err in outputs.items():
            cosine = err["min_cosine"]
            say(f"  {tower:5s} {name:7s} max|Δ| {err['max_abs']:.2e}  cosine {cosine:.8f}")
    check_tolerance(report, exporter.tolerance)
    say(f"Manifest → {write_manifest(output, manifest)}")
    return manifest


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="to_onnx.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--family", choices=sorted(REGISTRY), default=DEFAULT, help="model family (%(default)s)"
    )
    for dest, help_text in family_options().items():
        parser.add_argument(f"--{dest.replace('_', '-')}", dest=dest, type=Path, help=help_text)
    parser.add_argument("--output", type=Path, required=True, help="model folder to write")
    parser.add_argument(
        "--demo", action="store_true", help="build and export the random-weight demo model"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the demo weights")
    parser.add_argument(
        "--quantize",
        choices=["int8"],
        help="also write INT8 graphs (export/quantize.py; static ones on synthetic audio)",
    )
    parser.add_argument(
        "--fp16", action="store_true", help="also write FP16 graphs (export/fp16.py), for GPUs"
    )
    args = parser.parse_args(argv)
    chosen, given = family(args.family), source(args)
    unread = [name for name in given.given() if name not in chosen.options]
    if unread:
        flag = unread[0].replace("_", "-")
        parser.error(f"--{flag} is not an option of --family {chosen.name}")
    problem = chosen.check_source(given, args.demo)
    if problem:
        parser.error(problem)
    return args


def family_options() -> dict[str, str]:
    """Every registered family's model-file options, by ``dest``, with help naming the
    families that read each."""
    helps: dict[str, list[str]] = {}
    for each in all_families():
        for dest, help_text in each.options.items():
            helps.setdefault(dest, []).append(f"{each.name}: {help_text}")
    return {dest: "; ".join(texts) for dest, texts in helps.items()}


def source(args: argparse.Namespace) -> Source:
    """The model files the command line names."""
    return Source(**{dest: getattr(args, dest) for dest in family_options()})


def export(args: argparse.Namespace) -> None:
    """Everything the command line asked for, in order."""
    if args.demo:
        say(f"*** {RANDOM_WEIGHTS_NOTE} ***")
    given = source(args)
    if args.demo:
        folder = args.output / "checkpoint"
        say(f"Writing the {family(args.family).title} demo model (seed {args.seed}) → {folder}")
        given = family(args.family).write_demo(folder, args.seed)
    export_model(args.family, given, args.output, random_weights=args.demo)
    if args.quantize:
        quantize_model(args.output)
    if args.fp16:
        say("Writing the FP16 graphs (frontend, Softmax, LayerNorm in float32) …")
        write_fp16_graphs(args.output)
    if args.demo:
        say(f"*** {RANDOM_WEIGHTS_NOTE} ***")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)  # exporter and quantiser chatter
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    return run_command("to_onnx.py", partial(export, args), (CheckpointError, *EXPECTED))


if __name__ == "__main__":
    sys.exit(main())
