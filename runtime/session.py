"""ONNX Runtime sessions: provider choice and the options that make them fast."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

# Fastest first; None picks whichever of these this onnxruntime build has.
PREFERRED_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)


def choose_providers(providers: list[str] | None) -> list[str]:
    available = ort.get_available_providers()
    if providers is None:
        return [p for p in PREFERRED_PROVIDERS if p in available]
    missing = [p for p in providers if p not in available]
    if missing:
        raise ValueError(f"providers {missing} are not in this onnxruntime (it has {available})")
    return list(providers)


def open_session(path: Path, providers: list[str], threads: int | None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    # Without the arena, the memory of a long track's windows goes back to the system after
    # the call (peak RSS for a 3-minute track: ~920 → ~670 MB for the audio tower alone), and
    # the large tensors these graphs allocate come no slower from malloc than from the arena.
    options.enable_cpu_mem_arena = False
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=providers)
