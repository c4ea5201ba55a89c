"""INT8 variants of the exported graphs, for CPUs (VNNI makes INT8 convolutions fast).

- ``audio.int8.onnx``: static, per-channel QDQ quantisation of the ResNet convolutions and
  the attention pool's projections, calibrated on preprocessed windows. The frontend (DFT,
  mel, log, floor), the convolutions of the stem, of layer1 and of layer2's first block
  (they see the log-mel's fine detail: quantising them cost more accuracy than the later
  ones, for little time), the attention scores and the LayerNorm stay in float.
- ``text.int8.onnx``: dynamic quantisation of the transformer's MatMuls (weights per
  channel, activations quantised on the fly); embeddings and LayerNorm stay in float.

    python export/quantize.py --model-dir DIR [--calibration-dir MUSIC] [--calibration-windows 32]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Iterator
from functools import partial
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
from export.synthetic import random_track
from runtime.audio import AUDIO_EXTENSIONS

AUDIO_INT8 = "audio.int8.onnx"
TEXT_INT8 = "text.int8.onnx"
# Convolutions kept in float, by the names of their weights: the stem, the first stage and
# the first block of the second, which see the log-mel's fine detail. On the demo model's
# 300-track synthetic catalog (cosine to fp32 min, mean 1 - cosine, top-10 text→track
# agreement with the INT8 text tower): every conv in INT8 0.985, 2.7e-3, 0.78; stem in float
# 0.997, 4.5e-4, 0.83; stem + layer1 0.9995, 1.6e-4, 0.87; this set, with the attention
# pool's projections in INT8, 0.9997, 1.5e-4, 0.915.
FLOAT_CONVS = ("encoder.conv", "encoder.layer1.", "encoder.layer2.0.")


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
        sources = (track_windows(random_track(seed, 20.0), 22050, hp) for seed in range(10**6))
    for track in sources:
        track = track[: windows - total]
        tracks.append(track)
        total += len(track)
        if total >= windows:
            break
    return tracks


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


def quantize_text(model_dir: Path) -> Path:
    target = model_dir / TEXT_INT8
    quantize_dynamic(
        str(model_dir / "text.onnx"),
        str(target),
        op_types_to_quantize=["MatMul", "Gemm"],
        per_channel=True,
        weight_type=QuantType.QInt8,
    )
    return target


def quantize_model(
    model_dir: Path, calibration_dir: Path | None = None, calibration_windows: int = 32
) -> dict:
    """Write both INT8 graphs beside the fp32 ones and record them in the manifest."""
    manifest_path = model_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    if manifest["family"] != "ttmrpp":
        raise ValueError(f"{model_dir}: the INT8 profile is TTMR++'s, not {manifest['family']}'s")
    hp = HParams.from_dict(manifest["hparams"])
    started = time.perf_counter()
    tracks = calibration_tracks(hp, calibration_dir, calibration_windows)
    source = str(calibration_dir) if calibration_dir else "synthetic tracks (export/synthetic.py)"
    print(f"Calibrating the audio tower on {sum(map(len, tracks))} windows from {source} …")
    audio = quantize_audio(model_dir, hp, tracks)
    print(
        f"  {audio} ({audio.stat().st_size / 2**20:.0f} MiB, {time.perf_counter() - started:.0f} s)"
    )
    text = quantize_text(model_dir)
    print(f"  {text} ({text.stat().st_size / 2**20:.0f} MiB)")
    manifest["int8"] = {
        "audio": AUDIO_INT8,
        "text": TEXT_INT8,
        "audio_method": "static QDQ, per-channel Conv/MatMul; frontend, early convs in float",
        "text_method": "dynamic, per-channel MatMul/Gemm weights",
        "calibration": {"source": source, "windows": sum(map(len, tracks))},
    }
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
