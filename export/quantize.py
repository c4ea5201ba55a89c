"""INT8 variants of the exported graphs, for CPUs (VNNI makes INT8 convolutions fast).

- ``audio.int8.onnx``, TTMR++: static, per-channel QDQ quantisation of the ResNet
  convolutions and the attention pool's projections, calibrated on preprocessed windows.
  The frontend (DFT, mel, log, floor), the convolutions of the stem, of layer1 and of
  layer2's first block (they see the log-mel's fine detail: quantising them cost more
  accuracy than the later ones, for little time), the attention scores and the LayerNorm
  stay in float. CLAP (HTS-AT, a Swin transformer: almost all MatMuls): dynamic
  quantisation as for the text tower, the frontend in float.
- ``text.int8.onnx``: dynamic quantisation of the transformer's MatMuls (weights per
  channel, activations quantised on the fly); embeddings and LayerNorm stay in float.

At the end it prints the INT8 graphs' cosine to fp32 on the harder synthetic set
(``export/synthetic.py`` ``hard_set(0)``, never calibrated on) and on ``ACCURACY_QUERIES``.

    python export/quantize.py --model-dir DIR [--calibration-dir MUSIC] [--calibration-windows 32]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from functools import partial
from itertools import count
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from export.command import run_command
from export.graphs import frontend_nodes
from export.hparams import HParams
from export.reference import load_track, track_windows
from export.synthetic import RATE, hard_set, random_track
from runtime.audio import AUDIO_EXTENSIONS
from runtime.embedder import Embedder

AUDIO_INT8 = "audio.int8.onnx"
TEXT_INT8 = "text.int8.onnx"
# Convolutions kept in float, by the names of their weights: the stem, the first stage and
# the first block of the second, which see the log-mel's fine detail. On the demo model's
# 300-track synthetic catalog (cosine to fp32 min, mean 1 - cosine, top-10 text→track
# agreement with the INT8 text tower): every conv in INT8 0.985, 2.7e-3, 0.78; stem in float
# 0.997, 4.5e-4, 0.83; stem + layer1 0.9995, 1.6e-4, 0.87; this set, with the attention
# pool's projections in INT8, 0.9997, 1.5e-4, 0.915.
FLOAT_CONVS = ("encoder.conv", "encoder.layer1.", "encoder.layer2.0.")
SYNTHETIC = "synthetic tracks (export/synthetic.py: random_track, hard_set from seed 1)"
# The sentences INT8's text accuracy is printed on: short tags to long descriptions.
ACCURACY_QUERIES = (
    "piano",
    "jazz",
    "a calm solo piano piece in D major with soft strings",
    "fast aggressive drums and distorted electric guitar",
    "Ambient synth pads, slow, dark, with field recordings of rain.",
    "upbeat pop song with female vocals and a catchy chorus",
    "lo-fi hip hop beat for studying",
    "a string quartet playing a sad romantic melody in a minor key, recorded in a church",
    "techno 130 bpm",
    "Ünïcödé: café jazz ♪",
    "folk guitar and harmonica, warm, acoustic, intimate, like a live bedroom recording "
    "with a little room noise and a voice singing softly about leaving home",
    "heavy metal",
)


class WindowReader(CalibrationDataReader):
    """Feeds calibration windows one track at a time, each with its own track id."""

    def __init__(self, tracks: list[np.ndarray]):
        self.feeds: Iterator[dict] = iter(
            {"waveform": windows, "track": np.zeros(len(windows), np.int64)} for windows in tracks
        )

    def get_next(self) -> dict | None:
        return next(self.feeds, None)


def calibration_tracks(hp: HParams, folder: Path | None, windows: int) -> list[np.ndarray]:
    """Preprocessed windows from the user's music (better) or synthetic tracks (default)."""
    tracks, total = [], 0
    if folder is not None:
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
        if not paths:
            raise ValueError(f"{folder}: no audio files to calibrate on")
        sources = (load_track(p, hp) for p in paths)
    else:
        sources = (track_windows(track, RATE, hp) for track in synthetic_tracks())
    for track in sources:
        track = track[: windows - total]
        tracks.append(track)
        total += len(track)
        if total >= windows:
            break
    return tracks


def synthetic_tracks() -> Iterator[np.ndarray]:
    """``random_track``s, each followed by the first 10 s of every kind of the hard set
    (loud, quiet, clipped, percussive, bright): calibrated on random tracks alone, INT8
    clipped the activations of noise bursts and sawtooth riffs (cosine 0.993 to fp32).
    Seeds start at 1: ``hard_set(0)`` is held out to measure the result."""
    for seed in count(1):
        yield random_track(seed, 20.0)
        yield from (track[: 10 * RATE] for track in hard_set(seed, long=False).values())


def float_nodes(graph: onnx.GraphProto) -> list[str]:
    """What stays in float: the frontend, the convolutions of ``FLOAT_CONVS`` and the
    products of two activations (the attention pool's scores)."""
    weights = {init.name for init in graph.initializer}
    convs = [
        n.name for n in graph.node if n.op_type == "Conv" and n.input[1].startswith(FLOAT_CONVS)
    ]
    products = [
        n.name
        for n in graph.node
        if n.op_type == "MatMul" and not any(name in weights for name in n.input)
    ]
    return frontend_nodes(graph) + convs + products


def quantize_audio(model_dir: Path, hp: HParams, tracks: list[np.ndarray]) -> Path:
    target = model_dir / AUDIO_INT8
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "audio.pre.onnx"
        quant_pre_process(str(model_dir / "audio.onnx"), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(target),
            WindowReader(tracks),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv", "MatMul"],
            nodes_to_exclude=float_nodes(onnx.load(str(prepared)).graph),
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    return target


def quantize_dynamically(model_dir: Path, tower: str) -> Path:
    """Dynamic INT8 of a tower's MatMuls and Gemms (weights per channel, activations on the
    fly): no calibration; the audio frontend stays in float."""
    source = model_dir / f"{tower}.onnx"
    target = model_dir / (AUDIO_INT8 if tower == "audio" else TEXT_INT8)
    quantize_dynamic(
        str(source),
        str(target),
        op_types_to_quantize=["MatMul", "Gemm"],
        nodes_to_exclude=frontend_nodes(onnx.load(str(source), load_external_data=False).graph),
        per_channel=True,
        weight_type=QuantType.QInt8,
    )
    return target


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two ``[rows, width]`` arrays."""
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def int8_accuracy(model_dir: Path, tracks: dict[str, np.ndarray], texts: Iterable[str]) -> dict:
    """Cosine of the INT8 joint embeddings to fp32's, as the runtime computes them."""
    rows = {}
    for precision in ("fp32", "int8"):
        model = Embedder(model_dir, precision=precision, providers=["CPUExecutionProvider"])
        rows[precision] = (model.embed_audio(list(tracks.values()), RATE), model.embed_text(texts))
    audio = cosines(rows["fp32"][0], rows["int8"][0])
    text = cosines(rows["fp32"][1], rows["int8"][1])
    return {
        "tracks": len(audio),
        "audio_min": float(audio.min()),
        "audio_mean": float(audio.mean()),
        "worst_track": list(tracks)[int(audio.argmin())],
        "queries": len(text),
        "text_min": float(text.min()),
        "text_mean": float(text.mean()),
    }


def quantize_model(
    model_dir: Path, calibration_dir: Path | None = None, calibration_windows: int = 32
) -> dict:
    """Write both INT8 graphs beside the fp32 ones, record them in the manifest, then
    measure and print (and record) how close they stay to fp32 on the held-out hard set."""
    manifest_path = model_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    started = time.perf_counter()
    if manifest["family"] == "ttmrpp":
        hp = HParams.from_dict(manifest["hparams"])
        tracks = calibration_tracks(hp, calibration_dir, calibration_windows)
        source = str(calibration_dir) if calibration_dir else SYNTHETIC
        print(f"Calibrating the audio tower on {sum(map(len, tracks))} windows from {source} …")
        audio = quantize_audio(model_dir, hp, tracks)
        int8 = {
            "audio_method": "static QDQ, per-channel Conv/MatMul; frontend, early convs in float",
            "calibration": {"source": source, "windows": sum(map(len, tracks))},
        }
    elif calibration_dir is not None:
        raise ValueError(
            f"{manifest['family']}'s INT8 audio tower is dynamic: nothing to calibrate"
        )
    else:
        print("Quantising the audio tower's MatMuls dynamically …")
        audio = quantize_dynamically(model_dir, "audio")
        int8 = {"audio_method": "dynamic, per-channel MatMul/Gemm weights; frontend in float"}
    print(
        f"  {audio} ({audio.stat().st_size / 2**20:.0f} MiB, {time.perf_counter() - started:.0f} s)"
    )
    text = quantize_dynamically(model_dir, "text")
    print(f"  {text} ({text.stat().st_size / 2**20:.0f} MiB)")
    manifest["int8"] = {
        "audio": AUDIO_INT8,
        "text": TEXT_INT8,
        **int8,
        "text_method": "dynamic, per-channel MatMul/Gemm weights",
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")  # the Embedder reads it
    accuracy = int8_accuracy(model_dir, hard_set(0), ACCURACY_QUERIES)
    print(
        f"  audio cosine to fp32 on {accuracy['tracks']} held-out synthetic tracks "
        f"(export/synthetic.py hard_set(0)): min {accuracy['audio_min']:.5f} "
        f"({accuracy['worst_track']}), mean {accuracy['audio_mean']:.5f}; "
        f"text on {accuracy['queries']} queries: min {accuracy['text_min']:.5f}, "
        f"mean {accuracy['text_mean']:.5f}"
    )
    manifest["int8"]["accuracy"] = accuracy
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quantize.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="folder from to_onnx.py")
    parser.add_argument("--calibration-dir", type=Path, help="music to calibrate on (recursive)")
    parser.add_argument("--calibration-windows", type=int, default=32, help="10-s windows to use")
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization warns via root
    work = partial(quantize_model, args.model_dir, args.calibration_dir, args.calibration_windows)
    return run_command("quantize.py", work)


if __name__ == "__main__":
    sys.exit(main())
