"""ONNX Runtime sessions (``OnnxRuntimeSession``): provider choice, the options that make them
fast, and data moved to and from a GPU once per call."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import (
    Fail,
    InvalidGraph,
    InvalidProtobuf,
    NoSuchFile,
)

from runtime.errors import InputError, ModelFolderError, TtmrError, first_line

# Fastest first; None picks whichever of these this onnxruntime build has. onnxruntime's own
# TensorRT provider is left out of the default (it would build engines, for minutes, in every
# new process); engines from export/to_tensorrt.py run through runtime.engines.tensorrt instead.
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
# float32 matmuls and convolutions in full float32 rather than TF32 (10-bit mantissa), so
# the CUDA fp32 path keeps the reference's accuracy.
PROVIDER_OPTIONS = {"CUDAExecutionProvider": {"use_tf32": "0"}}


def choose_providers(providers: list[str] | None) -> list[str]:
    available = ort.get_available_providers()
    if providers is None:
        return [p for p in PREFERRED_PROVIDERS if p in available]
    missing = [p for p in providers if p not in available]
    if missing:
        raise InputError(f"providers {missing} are not in this onnxruntime (it has {available})")
    return list(providers)


# The shared CPU arena grows by what a call asks for, not to the next power of two.
SHARED_ARENA = {"arena_extend_strategy": 1}  # kSameAsRequested


@functools.cache
def register_shared_arena() -> None:
    """One CPU memory arena in onnxruntime's environment, for every session of the process
    that asks for it (``session.use_env_allocators``), registered once."""
    cpu = ort.OrtMemoryInfo(
        "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
    )
    ort.create_and_register_allocator(cpu, ort.OrtArenaCfg(SHARED_ARENA))


def session_options(threads: int | None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    # An arena keeps the large tensors of one call for the next: from malloc they came back
    # as fresh pages every call, and faulting them in cost the full-size TTMR++ audio tower
    # 25 % of its int8 time and 12 % of its fp32 time (batches of 8, 2026-12-04). The
    # process's sessions (floor, audio, text) share one arena, so the floor pass's memory
    # serves the audio pass, and without a memory pattern it grows by what each call needs,
    # not by one block per input shape (60-minute fp32 track: 1085 MB, against 1256 with an
    # arena per session and 1599 with a memory pattern; README, "Speed and memory on CPU").
    register_shared_arena()
    options.add_session_config_entry("session.use_env_allocators", "1")
    options.enable_mem_pattern = False
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options


class OnnxRuntimeSession:
    """One graph on onnxruntime (a ``runtime.engines.Session``). On a GPU provider the feed
    goes up once and only the requested outputs come back (IO binding), rather than every
    output of the graph. ``strict``: fail, rather than run on the CPU, when the first
    provider cannot start."""

    def __init__(
        self, path: Path, providers: list[str], threads: int | None = None, strict: bool = False
    ):
        with_options = [(p, PROVIDER_OPTIONS.get(p, {})) for p in providers]
        try:
            self.session = ort.InferenceSession(str(path), session_options(threads), with_options)
        except (InvalidProtobuf, InvalidGraph, Fail, NoSuchFile) as err:
            raise ModelFolderError(
                f"{path}: not a graph onnxruntime can load ({first_line(err)})"
            ) from None
        self.providers = self.session.get_providers()
        if strict and self.providers[0] != providers[0]:
            # onnxruntime falls back (with a warning) when a provider cannot start.
            raise InputError(
                f"{providers[0]} could not start for {path.name} (onnxruntime fell back to "
                f"{self.providers}): see onnxruntime's message above"
            )
        # Where outputs are bound: the GPU's memory, or None to run without binding.
        self.output_device = "cuda" if self.providers[0] in GPU_PROVIDERS else None
        self.path = path

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self.session is None:
            raise TtmrError(f"{self.path}: the session is closed")
        if self.output_device is None:
            return self.session.run(names, feed)
        binding = self.session.io_binding()
        for name, array in feed.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        for name in names:
            binding.bind_output(name, self.output_device)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def close(self) -> None:
        """Frees the graph's memory now (else when the session is collected)."""
        self.session = None


# The name export/ still imports; the runtime says OnnxRuntimeSession.
GraphSession = OnnxRuntimeSession


def cuda_problem(graph: Path) -> str | None:
    """Why onnxruntime's CUDA provider cannot run ``graph`` here, or None when it can."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "no CUDAExecutionProvider in this onnxruntime (install onnxruntime-gpu)"
    try:
        OnnxRuntimeSession(graph, ["CUDAExecutionProvider", "CPUExecutionProvider"], strict=True)
    except InputError:
        return "onnxruntime's CUDA provider could not start: no CUDA device visible"
    return None
