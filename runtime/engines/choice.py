"""Which backend runs a model folder's graphs, at which precision: the one place that decides,
from what was asked, the folder's files, this CPU and the installed packages."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from runtime.engines.cpu import INT8_FLAGS, named_flags
from runtime.engines.openvino import openvino_problem
from runtime.errors import InputError, ModelFolderError
from runtime.manifest import Manifest

# Where each precision's graphs come from: fp32 is the export itself, and bf16 runs it.
PRECISIONS = {
    "fp32": "export/to_onnx.py",
    "bf16": "export/to_onnx.py (OpenVINO runs the fp32 graphs in bf16)",
    "fp16": "export/fp16.py (or to_onnx.py --fp16)",
    "int8": "export/quantize.py (or to_onnx.py --quantize int8)",
}
BACKENDS = ("auto", "onnxruntime", "openvino", "tensorrt")


@dataclass(frozen=True)
class Choice:
    """What runs the graphs: ``backend`` at ``precision``, and ``note``, why that is not
    what was asked for (``auto`` only ever moves to a higher precision, never a lower)."""

    backend: str
    precision: str
    note: str | None = None


def choose(
    manifest: Manifest, model_dir: Path, precision: str, backend: str, providers: list | None
) -> Choice:
    """The fastest backend this machine and its packages allow at ``precision``, for
    ``backend="auto"``: the folder's TensorRT engines where TensorRT is installed; bf16 on
    OpenVINO, or fp32 on onnxruntime where the CPU has no bf16 units or OpenVINO is missing;
    int8 on OpenVINO where the CPU has int8 dot-product units (VNNI, AMX-INT8); else
    onnxruntime (which engine is faster at fp32 depends on the CPU: docs/performance.md)."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {tuple(PRECISIONS)}, got {precision!r}")
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if providers is not None and backend == "openvino":
        raise InputError("providers are onnxruntime's; backend 'openvino' takes none")
    if backend == "openvino":
        problem = openvino_problem(precision)
        if problem:
            raise problem
        return Choice("openvino", precision)
    if precision == "bf16":
        if backend == "onnxruntime" or providers is not None:
            raise InputError(
                "bf16 runs on OpenVINO (backend 'openvino' or 'auto'); onnxruntime has no "
                "bf16 CPU kernels"
            )
        if backend == "tensorrt":
            raise InputError("TensorRT engines are fp32 or fp16, not bf16")
        problem = openvino_problem("bf16")
        if problem:
            return Choice("onnxruntime", "fp32", f"bf16 asked for, but {problem}: running fp32")
        return Choice("openvino", "bf16")
    engines = manifest.tensorrt.get(precision)
    if backend == "tensorrt" and engines is None:
        flag = " --fp16" if precision == "fp16" else ""
        raise ModelFolderError(
            f"{model_dir}: no {precision} TensorRT engines; build them with "
            f"export/to_tensorrt.py --model-dir {model_dir}{flag}"
        )
    installed = importlib.util.find_spec("tensorrt") is not None
    if backend == "tensorrt" or (backend == "auto" and engines and installed):
        return Choice("tensorrt", precision)
    if precision == "int8" and backend == "auto" and providers is None:
        if named_flags(INT8_FLAGS) and openvino_problem("int8") is None:
            return Choice("openvino", "int8")
    return Choice("onnxruntime", precision)
