"""The rows that scripts/bench.py times, on one model folder of any family: the PyTorch
reference (CPU; CUDA in fp32 and fp16 autocast) and the runtime (onnxruntime on CPU or CUDA
at each precision it has graphs for, TensorRT engines). Each row embeds the same three
things: a batch of preprocessed windows, a list of sentences, and one decoded track.

The reference is the folder's family's own (``export.families``), loaded from the files the
folder was exported from: those named by ``source`` (``to_onnx.py``'s options, by ``dest``)
or else a demo's, in the folder's ``checkpoint/`` (``Family.demo_source``). They must be the
weights the manifest records (sha256), or the reference rows are skipped.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from runtime.audio.reading import Track, load_track
from runtime.embedder import Embedder
from runtime.engines.folder import Tuning
from runtime.engines.openvino import openvino_problem
from runtime.manifest import read_manifest

if TYPE_CHECKING:
    from export.families import Family, Loaded, Source

REFERENCE = "PyTorch eager CPU fp32"
WHOLE_GRAPH_BF16 = "OpenVINO CPU bf16, whole graph (its own)"
CPU = ["CPUExecutionProvider"]
BACKEND_OF_PLACE = {
    "cpu": "onnxruntime",
    "cuda": "onnxruntime",
    "openvino": "openvino",
    "openvino-whole": "openvino",
    "trt": "tensorrt",
}
CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


@dataclass
class Row:
    """``windows``: preprocessed windows ``[B, N]`` (graph and pooling only); ``texts``:
    sentences (tokenizer included); ``track``: a decoded track (preprocessing included).
    Each returns joint embeddings as a numpy array, so GPU work is finished when it returns."""

    windows: Callable[[np.ndarray], np.ndarray]
    texts: Callable[[list[str]], np.ndarray]
    track: Callable[[np.ndarray], np.ndarray]


def reference_source(model_dir: Path, given: dict[str, Path] | None) -> tuple[Family, Source]:
    """The folder's family and the files its reference is loaded from: ``given`` (option
    ``dest`` → path) when there are any, else the demo's in ``model_dir / "checkpoint"``."""
    from export.families import Source, family

    chosen = family(read_manifest(model_dir).family)
    if given:
        return chosen, Source(**given)
    return chosen, chosen.demo_source(model_dir / "checkpoint")


def reference_problem(model_dir: Path, given: dict[str, Path] | None) -> str | None:
    """Why the reference cannot be loaded for ``model_dir`` (without loading it), or None."""
    chosen, source = reference_source(model_dir, given)
    paths = {name: getattr(source, name) for name in source.given()}
    unread = [name for name in paths if name not in chosen.options]
    missing = [str(path) for path in paths.values() if not path.exists()]
    if unread:
        why = f"{unread[0]} is not a file {chosen.title} reads"
    elif missing:
        why = f"no {', '.join(missing)}"
    else:
        why = chosen.check_source(source, False)
    if why is None:
        return None
    dests = ", ".join(chosen.options)
    return f"{why}; name the {chosen.title} files it came from: --source DEST=PATH ({dests})"


def load_reference(model_dir: Path, given: dict[str, Path] | None) -> Loaded:
    """The reference, checked to hold the weights the folder's graphs were exported from."""
    from export.checkpoint import sha256

    chosen, source = reference_source(model_dir, given)
    loaded = chosen.load(source)
    if sha256(loaded.weights) != read_manifest(model_dir).checkpoint["sha256"]:
        raise ValueError(f"{loaded.weights}: not the weights {model_dir} was exported from")
    return loaded


def torch_row(
    model_dir: Path, device: str, precision: str, threads: int, given: dict[str, Path] | None
) -> Row:
    """The reference as its users run it (PyTorch's default settings on the GPU but TF32,
    off). On the CPU in fp32 a track goes through the reference's own ``embed_track``; on
    a GPU (where that would feed CPU tensors) and under autocast (whose outputs it cannot
    hand to numpy) through the manifest's preprocessing (``model_windows``)."""
    import torch

    torch.set_num_threads(threads)
    model = load_reference(model_dir, given).reference
    manifest = read_manifest(model_dir)
    sample_rate = manifest.audio.sample_rate
    if device != "cpu":
        if not isinstance(model, torch.nn.Module):
            raise ValueError(f"the {manifest.family} reference runs on the CPU only")
        model = model.to(device)
        # cuDNN convolutions default to TF32; the fp32 row is strict float32, as ours is.
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False

    def mode():
        """fp16 autocast on a GPU, bf16 autocast on the CPU, else PyTorch's float32."""
        if precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(
            device, dtype=getattr(torch, {"fp16": "float16"}.get(precision, "bfloat16"))
        )

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
        if device == "cpu" and precision == "fp32":
            return model.embed_track(audio, sample_rate)[0]
        return windows(model_windows(model_dir, audio)).mean(0)

    return Row(windows, texts, track)


def model_windows(model_dir: Path, audio: np.ndarray) -> np.ndarray:
    """A mono track at the model's rate → its windows ``[n, window_samples]``, preprocessed
    as the manifest says (the runtime's ``load_track``)."""
    preprocessing = read_manifest(model_dir).audio.preprocessing
    return load_track(0, audio, preprocessing.sample_rate, preprocessing).windows


def row_embedder(name: str, model_dir: Path, threads: int, batch_size: int) -> Embedder:
    """The Embedder behind runtime row ``name``; ``batch_size``: windows or sentences per
    call (the Embedder sorts sentences by length first). The row of OpenVINO's own bf16
    compiles every graph whole (``Tuning.openvino_whole_graphs``): what pointing OpenVINO
    at our graphs gives, beside the runtime's bf16 (an f32 frontend)."""
    spec = ROWS[name]
    return Embedder(
        model_dir,
        providers={"cpu": CPU, "cuda": CUDA}.get(spec.place),
        threads=threads,
        precision=spec.precision,
        backend=BACKEND_OF_PLACE[spec.place],
        batch_size=batch_size,
        tuning=Tuning(openvino_whole_graphs=spec.place == "openvino-whole"),
    )


def runtime_row(embedder: Embedder) -> Row:
    def windows(batch: np.ndarray) -> np.ndarray:
        """The windows of one track, at most ``batch_size`` per call, each window's row."""
        return embedder.embed_windows([Track(batch, 0.0)])

    def track(samples: np.ndarray) -> np.ndarray:
        return embedder.embed_audio([samples], sample_rate=embedder.sample_rate)

    return Row(windows, embedder.embed_text, track)


@dataclass(frozen=True)
class RowSpec:
    """``place``: torch-cpu, torch-cuda (the reference), cpu, cuda (onnxruntime), openvino,
    openvino-whole (every graph whole, ``row_embedder``) or trt; ``precision``: of the graphs
    or engines (for torch, fp16/bf16 mean autocast)."""

    place: str
    precision: str


ROWS = {
    REFERENCE: RowSpec("torch-cpu", "fp32"),
    "PyTorch eager CUDA fp32": RowSpec("torch-cuda", "fp32"),
    "PyTorch eager CUDA fp16 autocast": RowSpec("torch-cuda", "fp16"),
    "PyTorch eager CPU bf16 autocast": RowSpec("torch-cpu", "bf16"),
    "ORT CPU fp32": RowSpec("cpu", "fp32"),
    "ORT CPU int8": RowSpec("cpu", "int8"),
    "OpenVINO CPU fp32": RowSpec("openvino", "fp32"),
    "OpenVINO CPU bf16": RowSpec("openvino", "bf16"),
    WHOLE_GRAPH_BF16: RowSpec("openvino-whole", "bf16"),
    "OpenVINO CPU int8": RowSpec("openvino", "int8"),
    "ORT CUDA fp32": RowSpec("cuda", "fp32"),
    "ORT CUDA fp16": RowSpec("cuda", "fp16"),
    "TensorRT fp32": RowSpec("trt", "fp32"),
    "TensorRT fp16": RowSpec("trt", "fp16"),
}


def build(
    name: str,
    model_dir: Path,
    threads: int,
    batch_size: int,
    given: dict[str, Path] | None = None,
) -> Row:
    """Row ``name``; the runtime's rows embed at most ``batch_size`` sentences per call;
    ``given``: the reference's files (``reference_source``)."""
    spec = ROWS[name]
    if spec.place.startswith("torch"):
        device = spec.place.removeprefix("torch-")
        return torch_row(model_dir, device, spec.precision, threads, given)
    return runtime_row(row_embedder(name, model_dir, threads, batch_size))


def unavailable(name: str, model_dir: Path, given: dict[str, Path] | None = None) -> str | None:
    """Why row ``name`` cannot run on this machine with this folder, or None."""
    place, precision = ROWS[name].place, ROWS[name].precision
    manifest = read_manifest(model_dir)
    if place.startswith("torch"):
        problem = reference_problem(model_dir, given)
        if problem or place == "torch-cpu":
            return problem
        import torch

        return None if torch.cuda.is_available() else "no CUDA device visible to PyTorch"
    if place == "trt":
        if importlib.util.find_spec("tensorrt") is None:
            return "TensorRT is not installed (NVIDIA's TensorRT container has it)"
        if precision not in manifest.tensorrt:
            flag = " --fp16" if precision == "fp16" else ""
            return f"no {precision} engines: run export/to_tensorrt.py --model-dir DIR{flag}"
        return None
    if place.startswith("openvino"):
        if problem := openvino_problem(precision):
            return str(problem)
    if manifest.graph_files("fp32" if precision == "bf16" else precision) is None:
        how = "export/quantize.py" if precision == "int8" else "export/fp16.py"
        return f"no {precision} graphs: run {how}"
    if place == "cuda":
        from runtime.engines.onnxruntime import cuda_problem

        return cuda_problem(model_dir / manifest.text.file)
    return None
