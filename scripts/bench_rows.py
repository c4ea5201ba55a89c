"""The rows that scripts/bench.py times, on one TTMR++ model folder: the PyTorch reference
(CPU; CUDA in fp32 and fp16 autocast) and the runtime (onnxruntime on CPU or CUDA at each
precision it has graphs for, TensorRT engines). Each row embeds the same three things:
a batch of preprocessed windows, a list of sentences, and one decoded track.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.manifest import read_manifest

REFERENCE = "PyTorch eager CPU fp32"
CPU = ["CPUExecutionProvider"]
CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


@dataclass
class Row:
    """``windows``: preprocessed windows ``[B, N]`` (graph and pooling only); ``texts``:
    sentences (tokenizer included); ``track``: a decoded track (preprocessing included).
    Each returns joint embeddings as a numpy array, so GPU work is finished when it returns."""

    windows: Callable[[np.ndarray], np.ndarray]
    texts: Callable[[list[str]], np.ndarray]
    track: Callable[[np.ndarray], np.ndarray]


def torch_row(model_dir: Path, device: str, autocast: bool, threads: int) -> Row:
    """The reference as its users run it (PyTorch's default settings on the GPU)."""
    import torch

    from export.ttmrpp.reference import load_reference, track_windows

    torch.set_num_threads(threads)
    checkpoint = model_dir / "checkpoint"
    model = load_reference(
        checkpoint / "ttmrpp.pth", checkpoint / "ttmrpp.yaml", checkpoint / "text_arch"
    ).to(device)

    def mode():
        if autocast:
            return torch.autocast(device, dtype=torch.float16)
        return contextlib.nullcontext()

    def windows(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), mode():
            joint, _ = model.audio_encode(torch.from_numpy(batch).to(device))
            return joint.float().cpu().numpy()

    def texts(sentences: list[str]) -> np.ndarray:
        tokens = model.tokenize(sentences)
        with torch.inference_mode(), mode():
            ids, mask = tokens["input_ids"].to(device), tokens["attention_mask"].to(device)
            return model.text_encode_ids(ids, mask)[0].float().cpu().numpy()

    def track(audio: np.ndarray) -> np.ndarray:
        return windows(track_windows(audio, model.hp.sr, model.hp)).mean(0)

    return Row(windows, texts, track)


def runtime_row(
    model_dir: Path,
    providers: list[str] | None,
    precision: str,
    backend: str,
    threads: int,
    batch_size: int,
) -> Row:
    """``batch_size``: sentences per call (the Embedder sorts them by length first)."""
    from runtime import Embedder

    embedder = Embedder(
        model_dir,
        providers=providers,
        threads=threads,
        precision=precision,
        backend=backend,
        batch_size=batch_size,
    )
    audio = embedder.session("audio")

    def windows(batch: np.ndarray) -> np.ndarray:
        feed = {"waveform": batch, "track": np.zeros(len(batch), np.int64)}
        return audio.run(["joint"], feed)[0]

    def track(samples: np.ndarray) -> np.ndarray:
        return embedder.embed_audio([samples], sample_rate=embedder.sample_rate)

    return Row(windows, embedder.embed_text, track)


@dataclass(frozen=True)
class RowSpec:
    """``place``: torch-cpu, torch-cuda (the reference), cpu, cuda (onnxruntime) or trt;
    ``precision``: of the graphs or engines (for torch-cuda, fp16 means autocast)."""

    place: str
    precision: str


ROWS = {
    REFERENCE: RowSpec("torch-cpu", "fp32"),
    "PyTorch eager CUDA fp32": RowSpec("torch-cuda", "fp32"),
    "PyTorch eager CUDA fp16 autocast": RowSpec("torch-cuda", "fp16"),
    "ORT CPU fp32": RowSpec("cpu", "fp32"),
    "ORT CPU int8": RowSpec("cpu", "int8"),
    "ORT CUDA fp32": RowSpec("cuda", "fp32"),
    "ORT CUDA fp16": RowSpec("cuda", "fp16"),
    "TensorRT fp32": RowSpec("trt", "fp32"),
    "TensorRT fp16": RowSpec("trt", "fp16"),
}


def build(name: str, model_dir: Path, threads: int, batch_size: int) -> Row:
    """Row ``name``; the runtime's rows embed at most ``batch_size`` sentences per call."""
    spec = ROWS[name]
    if spec.place.startswith("torch"):
        device = spec.place.removeprefix("torch-")
        return torch_row(model_dir, device, spec.precision == "fp16", threads)
    providers = {"cpu": CPU, "cuda": CUDA, "trt": None}[spec.place]
    backend = "tensorrt" if spec.place == "trt" else "onnxruntime"
    return runtime_row(model_dir, providers, spec.precision, backend, threads, batch_size)


def unavailable(name: str, model_dir: Path) -> str | None:
    """Why row ``name`` cannot run on this machine with this folder, or None."""
    place, precision = ROWS[name].place, ROWS[name].precision
    manifest = read_manifest(model_dir)
    if place == "torch-cpu":
        return None
    if place == "torch-cuda":
        import torch

        return None if torch.cuda.is_available() else "no CUDA device visible to PyTorch"
    if place == "trt":
        if importlib.util.find_spec("tensorrt") is None:
            return "TensorRT is not installed (NVIDIA's TensorRT container has it)"
        if precision not in manifest.tensorrt:
            flag = " --fp16" if precision == "fp16" else ""
            return f"no {precision} engines: run export/to_tensorrt.py --model-dir DIR{flag}"
        return None
    if manifest.graph_files(precision) is None:
        how = "export/quantize.py" if precision == "int8" else "export/fp16.py"
        return f"no {precision} graphs: run {how}"
    if place == "cuda":
        from runtime.session import cuda_problem

        return cuda_problem(model_dir / manifest.text.file)
    return None
