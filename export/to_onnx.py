"""Export TTMR++ to ONNX: ``audio.onnx`` (mel frontend fused), ``text.onnx``, the tokenizer
and a manifest.

    python export/to_onnx.py --checkpoint X.pth --config X.yaml [--text-arch DIR] --output DIR
    python export/to_onnx.py --demo --output DIR      # offline: seeded random weights
    … --quantize int8                                 # also write INT8 graphs (CPU profile)
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from export.checkpoint import CheckpointError, sha256
from export.demo import write_demo_checkpoint
from export.graphs import OPSET, OUTPUTS, TEXT_INPUTS, export_audio, export_text
from export.quantize import quantize_model
from export.reference import TTMRpp, load_reference

RANDOM_WEIGHTS_NOTE = (
    "RANDOM WEIGHTS (demo model): embeddings are meaningless; use a real checkpoint"
)
LIBRARIES = ("torch", "transformers", "onnx", "onnxscript", "onnxruntime", "tokenizers", "numpy")
ONNX_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64"}


def say(message: str) -> None:
    print(message, flush=True)


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


def write_tokenizer(model: TTMRpp, path: Path) -> None:
    """The fast tokenizer's own ``tokenizer.json``, truncating at ``max_length``, no padding
    (the runtime pads): loadable by ``tokenizers`` alone."""
    backend = model.tokenizer.backend_tokenizer
    backend.no_padding()
    backend.enable_truncation(max_length=model.hp.max_length)
    backend.save(str(path))


def validate(model: TTMRpp, output: Path) -> dict:
    """Optimum-style check: run both graphs in ONNX Runtime against the reference."""
    options = {"providers": ["CPUExecutionProvider"]}
    audio = ort.InferenceSession(str(output / "audio.onnx"), **options)
    text = ort.InferenceSession(str(output / "text.onnx"), **options)
    rng = np.random.default_rng(0)
    windows = (rng.standard_normal((2, model.hp.window_samples)) * 0.1).astype(np.float32)
    ref = model.audio_encode(torch.from_numpy(windows))
    got = audio.run(list(OUTPUTS), {"waveform": windows, "track": np.zeros(2, np.int64)})
    report = {"audio": max_errors(ref, got)}
    tokens = model.tokenize(["a calm solo piano piece in D", "distorted guitars, fast drums"])
    ref = model.text_encode_ids(tokens["input_ids"], tokens["attention_mask"])
    feed = {name: tokens[name].numpy() for name in TEXT_INPUTS}
    report["text"] = max_errors(ref, text.run(list(OUTPUTS), feed))
    return report


def max_errors(reference, exported) -> dict:
    result = {}
    for name, ref, got in zip(OUTPUTS, reference, exported, strict=True):
        ref = ref.detach().numpy()
        cos = (ref * got).sum(-1) / np.linalg.norm(ref, axis=-1) / np.linalg.norm(got, axis=-1)
        result[name] = {"max_abs": float(np.abs(ref - got).max()), "min_cosine": float(cos.min())}
    return result


def export_model(
    checkpoint: Path, config: Path, text_arch: Path | None, output: Path, random_weights: bool
) -> dict:
    """Export both towers of a checkpoint into ``output``; returns the manifest."""
    output.mkdir(parents=True, exist_ok=True)
    say(f"Loading {checkpoint} with {config}")
    model = load_reference(checkpoint, config, text_arch)
    graphs = {}
    for name, export in (("audio", export_audio), ("text", export_text)):
        started = time.perf_counter()
        path = output / f"{name}.onnx"
        say(f"Exporting the {name} tower → {path} …")
        graphs[name] = export(model, path)
        size = path.stat().st_size / 2**20
        say(f"  done in {time.perf_counter() - started:.1f} s, {size:.0f} MiB, checked")
    write_tokenizer(model, output / "tokenizer.json")
    say(f"Tokenizer → {output / 'tokenizer.json'}")
    hp = model.hp
    manifest = {
        "format": 1,
        "family": "ttmrpp",
        "random_weights": random_weights,
        "note": RANDOM_WEIGHTS_NOTE if random_weights else "",
        "hparams": hp.to_dict(),
        "audio": {
            "file": "audio.onnx",
            "sample_rate": hp.sr,
            "window_samples": hp.window_samples,
            "inputs": describe(graphs["audio"].graph.input),
            "outputs": describe(graphs["audio"].graph.output),
        },
        "text": {
            "file": "text.onnx",
            "tokenizer": "tokenizer.json",
            "max_length": hp.max_length,
            "pad_token_id": model.tokenizer.pad_token_id,
            "inputs": describe(graphs["text"].graph.input),
            "outputs": describe(graphs["text"].graph.output),
        },
        "opset": OPSET,
        "checkpoint": {"file": checkpoint.name, "sha256": sha256(checkpoint)},
        "versions": {lib: importlib.metadata.version(lib) for lib in LIBRARIES},
    }
    (output / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    say(f"Manifest → {output / 'manifest.json'}")
    say("Validating against the PyTorch reference (ONNX Runtime, CPU):")
    for tower, outputs in validate(model, output).items():
        for name, err in outputs.items():
            cosine = err["min_cosine"]
            say(f"  {tower:5s} {name:7s} max|Δ| {err['max_abs']:.2e}  cosine {cosine:.8f}")
    return manifest


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="to_onnx.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="upstream .pth (state_dict inside)")
    parser.add_argument("--config", type=Path, help="upstream .yaml hyper-parameters")
    parser.add_argument(
        "--text-arch", type=Path, help="local RoBERTa folder (config.json + tokenizer files)"
    )
    parser.add_argument("--output", type=Path, required=True, help="model folder to write")
    parser.add_argument(
        "--demo", action="store_true", help="build and export the random-weight demo model"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the demo weights")
    parser.add_argument(
        "--quantize",
        choices=["int8"],
        help="also write INT8 graphs (see export/quantize.py), calibrated on synthetic audio",
    )
    args = parser.parse_args(argv)
    if args.demo == bool(args.checkpoint or args.config):
        parser.error("give either --demo or both --checkpoint and --config")
    if not args.demo and not (args.checkpoint and args.config):
        parser.error("--checkpoint and --config go together")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)  # exporter and quantiser chatter
    torch.manual_seed(0)
    try:
        if args.demo:
            say(f"*** {RANDOM_WEIGHTS_NOTE} ***")
            say(f"Writing the demo checkpoint (seed {args.seed}) → {args.output / 'checkpoint'}")
            checkpoint, config, text_arch = write_demo_checkpoint(
                args.output / "checkpoint", seed=args.seed
            )
            export_model(checkpoint, config, text_arch, args.output, random_weights=True)
        else:
            export_model(args.checkpoint, args.config, args.text_arch, args.output, False)
        if args.quantize:
            quantize_model(args.output)
        if args.demo:
            say(f"*** {RANDOM_WEIGHTS_NOTE} ***")
    except (CheckpointError, ValueError, FileNotFoundError) as err:
        print(f"to_onnx.py: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
