"""Fill a Triton Inference Server model repository from an exported model folder.

    python -m export.to_triton --model-dir DIR [--repository triton_repo] [--backend BACKEND]

The client-facing models take one track's waveform or one sentence per row:

  audio_embedding  Python BLS: waveform → resample, [peak-normalise], windows →
                   [audio_floor: each track's log-mel floor] → audio_tower, windows of many
                   requests in calls of max_batch_windows rows → mean per track
  text_embedding   ensemble: text_tokenizer → text_tower
  text_tokenizer   Python: UTF-8 sentences → input_ids / attention_mask
  audio_floor      floor.onnx (families with a track-level log-mel floor: TTMR++),
                   dynamically batched: each window's floor
  audio_tower      audio.onnx, dynamically batched: rows are independent windows
  text_tower       text.onnx, dynamically batched

BACKEND runs the towers: ``onnxruntime`` (Triton's ONNX Runtime backend, GPU when there is
one) or ``tensorrt`` (Triton's TensorRT backend serving the ``.plan`` engines that
export/to_tensorrt.py built, ``--precision fp32`` or ``fp16``; GPU only, and only the GPU
model and TensorRT version that built them), both for NVIDIA's server container; ``python``
(ONNX Runtime inside the Python backend), which is what the CPU-only server of the
nvidia-pytriton wheel can serve; with ``--engine openvino [--precision bf16]`` OpenVINO runs
the towers inside it instead. The default is ``onnxruntime`` where that backend is
installed, else ``python``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from functools import partial
from pathlib import Path

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from export.command import run_command
from runtime.audio.reading import MAX_AUDIO_SECONDS
from runtime.manifest import (
    AudioTower,
    Engines,
    FloorGraph,
    Manifest,
    Tensor,
    TextTower,
    read_manifest,
)
from runtime.serving.triton import AUDIO_MODEL, TEXT_MODEL

# The Python backend's model.py of each model, shipped as package data next to this module.
CODE_DIR = Path(__file__).resolve().parent / "triton_models"
BACKENDS = ("onnxruntime", "tensorrt", "python")
# What runs a tower inside the Python backend, and at which precisions (see ``python_engine``).
ENGINES = {"onnxruntime": ("fp32",), "openvino": ("fp32", "bf16")}
# The precisions export/to_tensorrt.py builds engines at (``tensorrt`` in the manifest).
PLAN_PRECISIONS = ("fp32", "fp16")
ORT_BACKEND_DIR = Path("/opt/tritonserver/backends/onnxruntime")  # NVIDIA's container
TOKENIZER_MODEL, AUDIO_TOWER, TEXT_TOWER = "text_tokenizer", "audio_tower", "text_tower"
FLOOR_TOWER = "audio_floor"
TOWERS = {AUDIO_TOWER: "audio", TEXT_TOWER: "text", FLOOR_TOWER: "floor"}  # manifest sections
PYTHON_MODELS = (AUDIO_MODEL, TOKENIZER_MODEL)  # always Python; the towers only for python
# One source per kind of model: every tower is onnx_tower.py.
CODE = {AUDIO_MODEL: "audio_embedding.py", TOKENIZER_MODEL: "text_tokenizer.py"}
TOWER_CODE = "onnx_tower.py"
DTYPES = {"float32": "TYPE_FP32", "int64": "TYPE_INT64"}
HEADER = "# Written by export/to_triton.py ({backend} backend); regenerate rather than edit.\n"

# Serving policy. Audio: a dynamic batch is a few tracks, whose windows go to the towers in
# calls of max_batch_windows rows (their preferred batch size; Triton merges the shorter
# last calls of both audio_embedding instances). Text: tokenize many sentences at once,
# run the tower on batches of one padded length.
AUDIO_BATCH = {"max": 16, "preferred": [4, 8, 16], "delay_us": 5000, "instances": 2}
WINDOW_DELAY_US = 2000
TEXT_BATCH = {"max": 64, "preferred": [16, 32, 64], "delay_us": 2000}
TOKENIZER_BATCH = {"max": 64, "preferred": [64], "delay_us": 1000}
# One UTF-8 sentence per request row: what the tokenizer and the text ensemble take.
TEXT_INPUT = {"name": "text", "data_type": "TYPE_STRING", "dims": [1]}
# A track's windows no longer need one tower call, so its length is bounded only by what a
# request makes the server hold: the request itself and the track at the model's rate. The
# default is the runtime's own limit per item; the samples per request (below) bind first.
DEFAULT_MAX_AUDIO_SECONDS = MAX_AUDIO_SECONDS
DEFAULT_MAX_BATCH_WINDOWS = 32
# The default limit on samples per audio request: one hour at 48 kHz (172.8 M samples,
# 691 MB of float32), whatever the client's rate. A dynamic batch may hold 16 such requests;
# raise it (to_triton.py --max-request-samples) where the server's memory allows.
DEFAULT_REQUEST_SAMPLES = 3600 * 48_000


def default_backend() -> str:
    """What this machine can serve: ONNX Runtime's backend where NVIDIA's server has it."""
    return "onnxruntime" if ORT_BACKEND_DIR.is_dir() else "python"


def tensors(described: tuple[Tensor, ...], batched: bool) -> list[dict]:
    """Triton inputs/outputs from the manifest's graph descriptions (symbolic dims → -1);
    with ``batched`` the leading batch dimension is Triton's, not part of ``dims``."""
    out = []
    for value in described:
        dims = [d if isinstance(d, int) else -1 for d in value.shape]
        out.append(
            {
                "name": value.name,
                "data_type": DTYPES[value.dtype],
                "dims": dims[1:] if batched else dims,
            }
        )
        if batched and not out[-1]["dims"]:  # one value per row: Triton's dims are [1]
            out[-1] |= {"dims": [1], "reshape": {"shape": []}}
    return out


def instances(count: int, kind: str) -> list[dict]:
    return [{"count": count, "kind": kind}]


def batching(policy: dict) -> dict:
    return {
        "preferred_batch_size": policy["preferred"],
        "max_queue_delay_microseconds": policy["delay_us"],
    }


def parameters(values: dict) -> dict:
    return {key: {"string_value": str(value)} for key, value in values.items()}


def tower_config(
    name: str, graph: AudioTower | TextTower | FloorGraph, backend: str, policy: dict
) -> dict:
    """A tower: the exported graph (or its TensorRT engine), dynamically batched by Triton
    (its rows are independent)."""
    config = {
        "name": name,
        "max_batch_size": policy["max"],
        "input": tensors(graph.inputs, batched=True),
        "output": tensors(graph.outputs, batched=True),
        "dynamic_batching": batching(policy),
    }
    if backend == "python":
        config["backend"] = "python"
        config["instance_group"] = instances(1, "KIND_CPU")
    elif backend == "tensorrt":
        config["platform"] = "tensorrt_plan"
        config["default_model_filename"] = "model.plan"
        config["instance_group"] = instances(1, "KIND_GPU")
    else:
        config["platform"] = "onnxruntime_onnx"
        config["default_model_filename"] = "model.onnx"
        config["instance_group"] = instances(1, "KIND_AUTO")
    return config


def check_engines(manifest: Manifest, engines: Engines, precision: str, windows: int) -> None:
    """Refuse engines that cannot take what the other models send them: rows per call (the
    audio model's windows, the text ensemble's sentences) or the tokenizer's longest text."""
    rows = max(windows, TEXT_BATCH["max"])
    if engines.max_batch < rows:
        raise ValueError(
            f"the {precision} TensorRT engines take at most {engines.max_batch} rows per call "
            f"but the towers get up to {rows}: rebuild them with "
            f"export/to_tensorrt.py --max-batch {rows}"
        )
    if engines.max_tokens < manifest.text.max_length:
        raise ValueError(
            f"the {precision} text engine takes at most {engines.max_tokens} tokens but the "
            f"tokenizer gives up to {manifest.text.max_length}: rebuild it with "
            f"export/to_tensorrt.py --max-tokens {manifest.text.max_length}"
        )


def largest(tensors: list[dict], bound: int) -> dict[str, list[int]]:
    """Each tensor's largest accepted dims (without a batch dimension): its variable dims
    capped at ``bound``."""
    return {t["name"]: max_dims(t, bound) for t in tensors}


def max_dims(tensor: dict, bound: int) -> list[int]:
    if "reshape" in tensor:  # [1] per row in Triton, a scalar per row in the graph
        return tensor["reshape"]["shape"]
    return [bound if d == -1 else d for d in tensor["dims"]]


def limited_tower(config: dict, bound: int) -> dict:
    """A Python-backend tower refuses inputs whose variable dims exceed ``bound`` (tokens
    of ``text_tower``), NaN/inf inputs, and never answers NaN; the
    ONNX Runtime backend has no such check, so only Python-backend configs carry it."""
    limits = parameters({"max_dims": json.dumps(largest(config["input"], bound))})
    config["parameters"] = {**config.get("parameters", {}), **limits}
    return config


def python_engine(config: dict, engine: str, precision: str) -> dict:
    """A Python-backend tower run by ``engine`` (``runtime.engines.onnxruntime`` or
    ``runtime.engines.openvino``) at ``precision``; the floor graph is float32 always."""
    chosen = {"engine": engine, "precision": "fp32" if config["name"] == FLOOR_TOWER else precision}
    choice = parameters({key: json.dumps(value) for key, value in chosen.items()})
    config["parameters"] = {**config.get("parameters", {}), **choice}
    return config


def ragged_text_tower(config: dict, text: TextTower) -> dict:
    """The Python-backend text tower takes sentences of different padded lengths in one
    execution (its ``model.py`` pads them to the longest with these values), so requests
    from separate tokenizer executions still batch. Triton's ONNX Runtime backend would
    concatenate ragged inputs flat, so the other backends keep equal-shape batching."""
    pads = {"input_ids": text.pad_token_id, "attention_mask": 0}
    for tensor in config["input"]:
        tensor["allow_ragged_batch"] = True
    config["parameters"] = parameters({"pad_values": json.dumps(pads)})
    return config


def model_configs(
    manifest: Manifest,
    backend: str,
    max_audio_seconds: float,
    max_batch_windows: int,
    max_request_samples: int,
    engine: str = "onnxruntime",
    precision: str = "fp32",
) -> dict[str, dict]:
    """Every model's configuration, as dicts in the ModelConfig protobuf's JSON form."""
    audio, text = manifest.audio, manifest.text
    audio_out = tensors(audio.outputs, batched=True)
    text_out = tensors(text.outputs, batched=True)
    token_tensors = tensors(text.inputs, batched=True)
    windows = {"max": max_batch_windows, "preferred": [max_batch_windows]}
    windows["delay_us"] = WINDOW_DELAY_US
    towers = {
        TEXT_TOWER: tower_config(TEXT_TOWER, text, backend, TEXT_BATCH),
        AUDIO_TOWER: tower_config(AUDIO_TOWER, audio, backend, windows),
    }
    if manifest.floor:
        towers[FLOOR_TOWER] = tower_config(FLOOR_TOWER, manifest.floor, backend, windows)
    if backend == "python":
        for name in towers:
            if name != TEXT_TOWER:  # audio dims are fixed: only NaN/inf to refuse
                towers[name] = limited_tower(towers[name], bound=0)
        towers[TEXT_TOWER] = limited_tower(
            ragged_text_tower(towers[TEXT_TOWER], text), text.max_length
        )
        for name in towers:
            towers[name] = python_engine(towers[name], engine, precision)
    floor = {"floor": FLOOR_TOWER} if FLOOR_TOWER in towers else {}
    return towers | {
        AUDIO_MODEL: {
            "name": AUDIO_MODEL,
            "backend": "python",
            "max_batch_size": AUDIO_BATCH["max"],
            "input": [
                # Tracks differ in length; each request reaches execute() whole, so the
                # batcher may group them without padding.
                {
                    "name": "waveform",
                    "data_type": "TYPE_FP32",
                    "dims": [-1],
                    "allow_ragged_batch": True,
                },
                {"name": "sample_rate", "data_type": "TYPE_INT32", "dims": [1]},
            ],
            "output": audio_out,
            "dynamic_batching": batching(AUDIO_BATCH),
            "instance_group": instances(AUDIO_BATCH["instances"], "KIND_CPU"),
            "parameters": parameters(
                {
                    "tower": AUDIO_TOWER,
                    **floor,
                    "max_audio_seconds": max_audio_seconds,
                    "max_batch_windows": max_batch_windows,
                    "max_request_samples": max_request_samples,
                }
            ),
        },
        TOKENIZER_MODEL: {
            "name": TOKENIZER_MODEL,
            "backend": "python",
            "max_batch_size": TOKENIZER_BATCH["max"],
            "input": [TEXT_INPUT],
            "output": token_tensors,
            "dynamic_batching": batching(TOKENIZER_BATCH),
            "instance_group": instances(1, "KIND_CPU"),
        },
        TEXT_MODEL: {
            "name": TEXT_MODEL,
            "platform": "ensemble",
            "max_batch_size": TEXT_BATCH["max"],
            "input": [TEXT_INPUT],
            "output": text_out,
            "ensemble_scheduling": {
                "step": [
                    {
                        "model_name": TOKENIZER_MODEL,
                        "model_version": -1,
                        "input_map": {"text": "text"},
                        "output_map": {t["name"]: t["name"] for t in token_tensors},
                    },
                    {
                        "model_name": TEXT_TOWER,
                        "model_version": -1,
                        "input_map": {t["name"]: t["name"] for t in token_tensors},
                        "output_map": {t["name"]: t["name"] for t in text_out},
                    },
                ]
            },
        },
    }


def config_text(config: dict, backend: str) -> str:
    """``config.pbtxt`` text; parsing through Triton's ModelConfig schema rejects any typo."""
    message = json_format.ParseDict(config, model_config_pb2.ModelConfig())
    return HEADER.format(backend=backend) + text_format.MessageToString(message)


def place(source: Path, target: Path, link: bool) -> None:
    """Copy (or symlink) ``source`` to ``target``, replacing what is there."""
    if target.is_symlink() or target.exists():
        if target.resolve() == source.resolve():
            return
        target.unlink()
    if link:
        target.symlink_to(source.resolve())
    else:
        shutil.copyfile(source, target)


def engine_files(model_dir: Path, manifest: Manifest, precision: str) -> dict[str, Path]:
    """Each graph's TensorRT engine at ``precision``, as the manifest records them; a
    ``ValueError`` naming export/to_tensorrt.py where one was never built or is gone."""
    build = f"export/to_tensorrt.py --model-dir {model_dir}" + (
        " --fp16" if precision == "fp16" else ""
    )
    engines = manifest.tensorrt.get(precision)
    if engines is None:
        raise ValueError(f"{model_dir}: no {precision} TensorRT engines; build them with {build}")
    files = {}
    for graph in manifest.graphs:
        name = getattr(engines, graph)
        if name is None or not (model_dir / name).is_file():
            engine = f"{graph} engine {name}" if name else f"{graph} engine"
            raise ValueError(
                f"{model_dir}: the {precision} {engine} is missing; build the engines with {build}"
            )
        files[graph] = model_dir / name
    return files


def fill_repository(
    model_dir: Path,
    repository: Path,
    backend: str,
    link: bool = False,
    max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS,
    max_batch_windows: int = DEFAULT_MAX_BATCH_WINDOWS,
    max_request_samples: int = DEFAULT_REQUEST_SAMPLES,
    engine: str = "onnxruntime",
    precision: str = "fp32",
) -> list[str]:
    """Write every model's config, graph (or, for ``tensorrt``, engine at ``precision``) and
    Python code into ``repository``; returns the model names. The Python models' version
    folders also get the files of the model folder they read (``manifest.json``,
    ``tokenizer.json``). Nothing is written when the engines are missing or too small."""
    manifest = read_manifest(model_dir)
    if backend == "tensorrt":
        towers = engine_files(model_dir, manifest, precision)
        check_engines(manifest, manifest.tensorrt[precision], precision, max_batch_windows)
    else:
        towers = {graph: model_dir / manifest.tower(graph).file for graph in manifest.graphs}
    configs = model_configs(
        manifest,
        backend,
        max_audio_seconds,
        max_batch_windows,
        max_request_samples,
        engine,
        precision,
    )
    files = {
        AUDIO_MODEL: [model_dir / "manifest.json"],
        TOKENIZER_MODEL: [model_dir / "manifest.json", model_dir / manifest.text.tokenizer],
    }
    files |= {name: [towers[graph]] for name, graph in TOWERS.items() if graph in towers}
    code = CODE | ({name: TOWER_CODE for name in TOWERS} if backend == "python" else {})
    suffixes = {".onnx": "model.onnx", ".plan": "model.plan"}
    for name, config in configs.items():
        version = repository / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        (repository / name / "config.pbtxt").write_text(config_text(config, backend))
        for path in files.get(name, []):
            target = suffixes.get(path.suffix, path.name)
            place(path, version / target, link and path.suffix in suffixes)
        if name in code:
            place(CODE_DIR / code[name], version / "model.py", link=False)
    return list(configs)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="to_triton.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="from export/to_onnx.py")
    parser.add_argument("--repository", type=Path, default=Path("triton_repo"), help="to fill")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=default_backend(),
        help="what runs the towers (default here: %(default)s)",
    )
    parser.add_argument(
        "--engine",
        choices=list(ENGINES),
        default="onnxruntime",
        help="--backend python: what runs the towers inside it (default: %(default)s)",
    )
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16", "fp16"],
        default="fp32",
        help="--engine openvino: bf16 on CPUs with AMX or AVX-512-BF16; --backend tensorrt: "
        "the fp32 or fp16 engines (default: %(default)s)",
    )
    parser.add_argument(
        "--link",
        action="store_true",
        help="symlink the graphs (or engines) instead of copying them",
    )
    parser.add_argument(
        "--max-audio-seconds",
        type=float,
        default=DEFAULT_MAX_AUDIO_SECONDS,
        help="longer waveforms are rejected (default: %(default)s)",
    )
    parser.add_argument(
        "--max-batch-windows",
        type=int,
        default=DEFAULT_MAX_BATCH_WINDOWS,
        help="windows per audio-tower call (default: %(default)s)",
    )
    parser.add_argument(
        "--max-request-samples",
        type=int,
        default=DEFAULT_REQUEST_SAMPLES,
        help="audio requests holding more samples (all rows) are rejected, whatever their "
        "sample rate (default: %(default)s, one hour at 48 kHz)",
    )
    args = parser.parse_args(argv)
    if args.max_audio_seconds <= 0:
        parser.error("--max-audio-seconds must be positive")
    if args.max_request_samples < 1:
        parser.error("--max-request-samples must be at least 1")
    if args.max_batch_windows < 1:
        parser.error("--max-batch-windows must be at least 1")
    if args.engine != "onnxruntime" and args.backend != "python":
        parser.error(f"--engine {args.engine} runs inside the Python backend: add --backend python")
    if args.backend == "tensorrt":
        if args.precision not in PLAN_PRECISIONS:
            parser.error(f"--backend tensorrt serves fp32 or fp16 engines, not {args.precision}")
    elif args.precision not in ENGINES[args.engine]:
        needs = "--backend tensorrt" if args.precision == "fp16" else "--engine openvino"
        parser.error(f"--precision {args.precision} needs {needs}")
    return args


def write_repository(args: argparse.Namespace) -> None:
    names = fill_repository(
        args.model_dir,
        args.repository,
        args.backend,
        args.link,
        args.max_audio_seconds,
        args.max_batch_windows,
        args.max_request_samples,
        args.engine,
        args.precision,
    )
    runs = {
        "python": f", towers on {args.engine} {args.precision}",
        "tensorrt": f", {args.precision} engines",
    }.get(args.backend, "")
    print(f"{args.repository}: {', '.join(names)} ({args.backend} backend{runs})")
    if args.backend == "python":
        print(f"Serve on CPU with: scripts/serve.sh {os.fspath(args.repository)}")
    else:
        print(
            "Serve with the tritonserver of NVIDIA's container: scripts/serve.sh's CPU "
            f"server has no {args.backend} backend"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command("to_triton.py", partial(write_repository, args))


if __name__ == "__main__":
    sys.exit(main())
