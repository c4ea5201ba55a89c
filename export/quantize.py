"""INT8 variants of the exported graphs, for CPUs (VNNI makes INT8 convolutions fast).

- ``audio.int8.onnx``: for a family with ``StaticInt8`` (TTMR++), static, per-channel QDQ
  quantisation of the convolutions and MatMuls with weights, calibrated on preprocessed
  windows, each activation's range ending at the family's ``activation_percentile``-th
  percentile of its magnitudes; the frontend (DFT, mel, log, floor), the family's
  ``float_convs`` (TTMR++: the stem and the two 1×1s that read its output, which see the
  log-mel's fine detail: quantising them cost more accuracy than the later ones, for little
  time), the products of two activations (attention scores), the attention pool's per-head
  MatMuls and the LayerNorm stay in float; a Relu after an INT8 convolution is folded into
  that convolution's output quantisation. Otherwise (CLAP's HTS-AT, a Swin transformer:
  almost all MatMuls; MusCALL's) dynamic quantisation as for the text tower, the frontend
  and the per-head MatMuls in float.
- ``text.int8.onnx``: dynamic quantisation of the transformer's MatMuls (weights per
  channel, activations quantised on the fly); embeddings and LayerNorm stay in float.

At the end it prints the INT8 graphs' cosine to fp32 on the harder synthetic set
(``export/synthetic.py`` ``hard_set(0)``, never calibrated on) and on ``ACCURACY_QUERIES``.

    python export/quantize.py --model-dir DIR [--calibration-dir MUSIC] [--calibration-windows 32]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from export.command import run_command
from export.families import StaticInt8, family
from export.onnx_export import frontend_nodes
from export.synthetic import RATE, hard_set
from runtime.batching import whole_track_feed
from runtime.embedder import Embedder
from runtime.engines.onnxruntime import OnnxRuntimeSession
from runtime.manifest import Int8, Manifest, read_manifest, write_manifest

AUDIO_INT8 = "audio.int8.onnx"
TEXT_INT8 = "text.int8.onnx"
# Quantised in the static audio graph. A Relu is there to be folded away: a Relu after an
# INT8 convolution becomes that convolution's output quantisation (range [0, max]), so the
# activation is quantised once, not twice: more accurate, and faster (docs/exporting.md).
STATIC_OPS = ["Conv", "MatMul", "Relu"]
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
    """Feeds the calibration windows one at a time, each with its track's log-mel floor
    where the model has a floor graph (``floor``: its session). One window per feed is what
    the histogram calibrator can merge (its collector needs equal shapes), and with a stride
    of one feed it keeps one window's activations at a time, whatever the window count."""

    def __init__(self, tracks: list[np.ndarray], floor: OnnxRuntimeSession | None):
        run = floor and (lambda batch: floor.run(["floor"], batch.feed))
        self.windows = [
            {name: values[i : i + 1] for name, values in whole_track_feed(track, run).items()}
            for track in tracks
            for i in range(len(track))
        ]
        self.set_range(0, len(self.windows))

    def __len__(self) -> int:
        return len(self.windows)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.pending: Iterator[dict] = iter(self.windows[start_index:end_index])

    def get_next(self) -> dict | None:
        return next(self.pending, None)


def floor_session(model_dir: Path) -> OnnxRuntimeSession | None:
    """The model's floor graph (TTMR++), or None for a family without one."""
    floor = read_manifest(model_dir).floor
    return floor and OnnxRuntimeSession(model_dir / floor.file, ["CPUExecutionProvider"])


def per_head_matmuls(graph: onnx.GraphProto) -> list[str]:
    """MatMuls whose weight has more than two dimensions: the one-query attention pool's
    key and value, taken per head (``[heads, …]``), and the frontend's DFT stages. The
    pool's are a few MFLOP; one activation scale for every head's output cost accuracy
    (hard-set min 0.99931 against 0.99973 in float), and onnxruntime's dynamic quantiser
    writes per-channel parameters its kernel refuses."""
    stacked = {init.name for init in graph.initializer if len(init.dims) > 2}
    return [n.name for n in graph.node if n.op_type == "MatMul" and stacked.intersection(n.input)]


def float_nodes(graph: onnx.GraphProto, float_convs: tuple[str, ...]) -> list[str]:
    """What stays in float: the frontend, the convolutions of ``float_convs``, the products
    of two activations (the attention pool's scores and mix) and the per-head MatMuls."""
    weights = {init.name for init in graph.initializer}
    convs = [
        n.name for n in graph.node if n.op_type == "Conv" and n.input[1].startswith(float_convs)
    ]
    products = [
        n.name
        for n in graph.node
        if n.op_type == "MatMul" and not any(name in weights for name in n.input)
    ]
    kept = frontend_nodes(graph) + convs + products + per_head_matmuls(graph)
    return sorted(set(kept))


def quantize_audio(model_dir: Path, int8: StaticInt8, tracks: list[np.ndarray]) -> Path:
    target = model_dir / AUDIO_INT8
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "audio.pre.onnx"
        quant_pre_process(str(model_dir / "audio.onnx"), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        # The histogram calibrator prints its progress; the command says what it does.
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                str(prepared),
                str(target),
                WindowReader(tracks, floor_session(model_dir)),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=STATIC_OPS,
                nodes_to_exclude=float_nodes(graph, int8.float_convs),
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.Percentile,
                # onnxruntime strides every calibrator this way, not only MinMax's.
                extra_options={
                    "CalibPercentile": int8.activation_percentile,
                    "CalibStridedMinMax": 1,
                },
            )
    return target


def quantize_dynamically(model_dir: Path, tower: str) -> Path:
    """Dynamic INT8 of a tower's MatMuls and Gemms (weights per channel, activations on the
    fly): no calibration; the audio frontend and the per-head MatMuls stay in float."""
    source = model_dir / f"{tower}.onnx"
    target = model_dir / (AUDIO_INT8 if tower == "audio" else TEXT_INT8)
    graph = onnx.load(str(source), load_external_data=False).graph
    quantize_dynamic(
        str(source),
        str(target),
        op_types_to_quantize=["MatMul", "Gemm"],
        nodes_to_exclude=sorted(set(frontend_nodes(graph) + per_head_matmuls(graph))),
        per_channel=True,
        weight_type=QuantType.QInt8,
    )
    return target


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two ``[rows, width]`` arrays (of two vectors: one cosine)."""
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


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
) -> Manifest:
    """Write both INT8 graphs beside the fp32 ones, record them in the manifest, then
    measure and print (and record) how close they stay to fp32 on the held-out hard set."""
    manifest = read_manifest(model_dir)
    started = time.perf_counter()
    static = family(manifest.family).int8
    if static is not None:
        tracks = static.calibration(manifest.hparams, calibration_dir, calibration_windows)
        source = str(calibration_dir) if calibration_dir else SYNTHETIC
        print(f"Calibrating the audio tower on {sum(map(len, tracks))} windows from {source} …")
        audio = quantize_audio(model_dir, static, tracks)
        int8 = {
            "audio_method": static.method,
            "calibration": {"source": source, "windows": sum(map(len, tracks))},
        }
    elif calibration_dir is not None:
        raise ValueError(f"{manifest.family}'s INT8 audio tower is dynamic: nothing to calibrate")
    else:
        print("Quantising the audio tower's MatMuls dynamically …")
        audio = quantize_dynamically(model_dir, "audio")
        int8 = {"audio_method": "dynamic, per-channel MatMul/Gemm weights; frontend in float"}
    print(
        f"  {audio} ({audio.stat().st_size / 2**20:.0f} MiB, {time.perf_counter() - started:.0f} s)"
    )
    text = quantize_dynamically(model_dir, "text")
    print(f"  {text} ({text.stat().st_size / 2**20:.0f} MiB)")
    int8 = Int8(
        audio=AUDIO_INT8,
        text=TEXT_INT8,
        **int8,
        text_method="dynamic, per-channel MatMul/Gemm weights",
    )
    write_manifest(model_dir, manifest.replace(int8=int8))  # the Embedder reads it
    accuracy = int8_accuracy(model_dir, hard_set(0), ACCURACY_QUERIES)
    print(
        f"  audio cosine to fp32 on {accuracy['tracks']} held-out synthetic tracks "
        f"(export/synthetic.py hard_set(0)): min {accuracy['audio_min']:.5f} "
        f"({accuracy['worst_track']}), mean {accuracy['audio_mean']:.5f}; "
        f"text on {accuracy['queries']} queries: min {accuracy['text_min']:.5f}, "
        f"mean {accuracy['text_mean']:.5f}"
    )
    manifest = manifest.replace(int8=replace(int8, accuracy=accuracy))
    write_manifest(model_dir, manifest)
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
