"""Export a two-tower model to ONNX: ``audio.onnx`` (mel frontend fused), ``text.onnx``, the
tokenizer and a manifest.

    python export/to_onnx.py --checkpoint X.pth --config X.yaml [--text-arch DIR] --output DIR
    python export/to_onnx.py --family clap --hf-model DIR --output DIR
    python export/to_onnx.py --family clap --checkpoint X.pt --text-arch DIR --output DIR
    python export/to_onnx.py --family muscall --checkpoint best_model.pth.tar \
        --config config.yaml --tokenizer CLIP_TOKENIZER_DIR --output DIR
    python export/to_onnx.py [--family clap|muscall] --demo --output DIR  # offline: random weights
    … --quantize int8                                 # also write INT8 graphs (CPU)
    … --fp16                                          # also write FP16 graphs (GPU)
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
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
from export.command import EXPECTED, run_command
from export.families import REGISTRY, Family, Source, family
from export.fp16 import write_fp16_graphs
from export.onnx_export import OPSET, OUTPUTS, TEXT_INPUTS
from export.quantize import cosines, quantize_model

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


def write_tokenizer(model, max_length: int, path: Path) -> None:
    """The fast tokenizer's own ``tokenizer.json``, truncating at ``max_length``, no padding
    (the runtime pads): loadable by ``tokenizers`` alone."""
    backend = model.tokenizer.backend_tokenizer
    backend.no_padding()
    backend.enable_truncation(max_length=max_length)
    backend.save(str(path))


def validate(model, window_samples: int, output: Path) -> dict:
    """Optimum-style check: run both graphs in ONNX Runtime against the reference."""
    options = {"providers": ["CPUExecutionProvider"]}
    audio = ort.InferenceSession(str(output / "audio.onnx"), **options)
    text = ort.InferenceSession(str(output / "text.onnx"), **options)
    rng = np.random.default_rng(0)
    windows = (rng.standard_normal((2, window_samples)) * 0.1).astype(np.float32)
    ref = model.audio_encode(torch.from_numpy(windows))
    feed = {"waveform": windows, "track": np.zeros(2, np.int64)}  # the track of TTMR++
    feed = {value.name: feed[value.name] for value in audio.get_inputs()}
    report = {"audio": max_errors(ref, audio.run(list(OUTPUTS), feed))}
    tokens = model.tokenize(["a calm solo piano piece in D", "distorted guitars, fast drums"])
    ref = model.text_encode_ids(tokens["input_ids"], tokens["attention_mask"])
    feed = {name: tokens[name].numpy() for name in TEXT_INPUTS}
    report["text"] = max_errors(ref, text.run(list(OUTPUTS), feed))
    return report


def max_errors(reference, exported) -> dict:
    result = {}
    for name, ref, got in zip(OUTPUTS, reference, exported, strict=True):
        ref = ref.detach().numpy()
        cos = cosines(ref, got)
        result[name] = {"max_abs": float(np.abs(ref - got).max()), "min_cosine": float(cos.min())}
    return result


def export_model(name: str, source: Source, output: Path, random_weights: bool) -> dict:
    """Load the model of family ``name`` from ``source`` and export both towers into
    ``output``; returns the manifest."""
    chosen = family(name)
    say(f"Loading the {chosen.title} model: {source}")
    loaded = chosen.load(source)
    return export_reference(loaded.reference, chosen, loaded.weights, output, random_weights)


def export_reference(
    model, exporter: Family, checkpoint: Path, output: Path, random_weights: bool
) -> dict:
    """Export both towers of a loaded reference of the family ``exporter`` into ``output``;
    returns the manifest. ``checkpoint`` is the weights file whose sha256 the manifest
    records."""
    output.mkdir(parents=True, exist_ok=True)
    settings = exporter.settings(model)
    graphs = {}
    for name, export in (("audio", exporter.export_audio), ("text", exporter.export_text)):
        started = time.perf_counter()
        path = output / f"{name}.onnx"
        say(f"Exporting the {name} tower → {path} …")
        graphs[name] = export(model, path)
        size = path.stat().st_size / 2**20
        say(f"  done in {time.perf_counter() - started:.1f} s, {size:.0f} MiB, checked")
    write_tokenizer(model, settings["text"]["max_length"], output / "tokenizer.json")
    say(f"Tokenizer → {output / 'tokenizer.json'}")
    manifest = {
        "format": 2,
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
        "opset": OPSET,
        "checkpoint": {
            "file": checkpoint.name,
            "sha256": sha256(checkpoint),
            **settings.get("checkpoint", {}),
        },
        "versions": {lib: importlib.metadata.version(lib) for lib in LIBRARIES},
    }
    (output / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    say(f"Manifest → {output / 'manifest.json'}")
    say("Validating against the PyTorch reference (ONNX Runtime, CPU):")
    report = validate(model, settings["audio"]["window_samples"], output)
    for tower, outputs in report.items():
        for name, err in outputs.items():
            cosine = err["min_cosine"]
            say(f"  {tower:5s} {name:7s} max|Δ| {err['max_abs']:.2e}  cosine {cosine:.8f}")
    return manifest


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="to_onnx.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--family", choices=sorted(REGISTRY), default="ttmrpp", help="model family (%(default)s)"
    )
    parser.add_argument(
        "--checkpoint", type=Path, help="the model's weights file (a state_dict inside)"
    )
    parser.add_argument("--config", type=Path, help="the checkpoint's .yaml hyper-parameters")
    parser.add_argument(
        "--text-arch", type=Path, help="local text-model folder (config.json + tokenizer files)"
    )
    parser.add_argument(
        "--hf-model",
        type=Path,
        help="a Hugging Face model folder (config, weights, tokenizer)",
    )
    parser.add_argument(
        "--tokenizer", type=Path, help="a tokenizer folder (vocab.json + merges.txt)"
    )
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
    problem = family(args.family).check_source(source(args), args.demo)
    if problem:
        parser.error(problem)
    return args


def source(args: argparse.Namespace) -> Source:
    """The model files the command line names."""
    return Source(args.checkpoint, args.config, args.text_arch, args.hf_model, args.tokenizer)


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
