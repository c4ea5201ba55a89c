"""ONNX Runtime sessions (``OnnxRuntimeSession``): provider choice, the options that make them
fast, and data moved to and from a GPU once per call."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import os
import sys
import tempfile
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
CUDA_FIRST = ["CUDAExecutionProvider", "CPUExecutionProvider"]
# How cuDNN picks each convolution's algorithm: HEURISTIC asks cuDNN's heuristics once;
# EXHAUSTIVE (onnxruntime's default) times every algorithm again for each new input shape,
# which the last, shorter batch of every track is. The environment variable overrides it
# so that scripts/gpu_check.sh can time both.
CONV_ALGO_SEARCH_VARIABLE = "TTMR_CUDNN_CONV_ALGO_SEARCH"
CONV_ALGO_SEARCHES = ("HEURISTIC", "EXHAUSTIVE", "DEFAULT")


def cuda_options() -> dict[str, str]:
    """The CUDA provider's options (docs/gpu.md says why each)."""
    search = os.environ.get(CONV_ALGO_SEARCH_VARIABLE, "HEURISTIC").upper()
    if search not in CONV_ALGO_SEARCHES:
        raise InputError(
            f"{CONV_ALGO_SEARCH_VARIABLE}={search!r}: expected one of {CONV_ALGO_SEARCHES}"
        )
    return {
        "cudnn_conv_algo_search": search,
        # float32 matmuls and convolutions in full float32 rather than TF32 (10-bit
        # mantissa), so the CUDA fp32 path keeps the reference's accuracy.
        "use_tf32": "0",
        # The GPU arena grows by what a call asks for, not to the next power of two.
        "arena_extend_strategy": "kSameAsRequested",
        # cuDNN may use as much workspace as its fastest convolution algorithm needs.
        "cudnn_conv_use_max_workspace": "1",
    }


def provider_options(provider: str) -> dict[str, str]:
    return cuda_options() if provider == "CUDAExecutionProvider" else {}


def cuda_library_folders(cuda_version: str) -> list[Path]:
    """The folders of NVIDIA's pip wheels (as torch's CUDA 13 wheels install them) that hold
    the libraries of CUDA ``cuda_version`` (``nvidia/cu13/lib``) and of cuDNN
    (``nvidia/cudnn/lib``), where they exist."""
    spec = importlib.util.find_spec("nvidia")
    roots = [Path(root) for root in (spec.submodule_search_locations or [])] if spec else []
    major = cuda_version.split(".")[0]
    wanted = [f"cu{major}/lib", "cudnn/lib"]
    return [root / name for name in wanted for root in roots if (root / name).is_dir()]


@functools.cache
def preload_cuda_libraries() -> str:
    """Load CUDA's and cuDNN's libraries from NVIDIA's pip wheels before the first CUDA
    session: a process that has not imported torch does not find them on the loader path,
    and onnxruntime would then run on the CPU. Returns what onnxruntime said of the
    libraries it could not load ('' when all loaded, or nothing was to be loaded)."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return ""
    preload = getattr(ort, "preload_dlls", None)
    folders = cuda_library_folders(getattr(ort, "cuda_version", "") or "")
    if preload is None or not folders:
        return ""
    said = io.StringIO()
    with contextlib.redirect_stdout(said):
        for folder in folders:
            cudnn = folder.parent.name == "cudnn"
            preload(cuda=not cudnn, cudnn=cudnn, msvc=False, directory=str(folder))
    return said.getvalue().strip()


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
    # One arena shared by the process's sessions, without per-shape memory patterns: calls
    # reuse its pages and it grows only by what a call needs (docs/performance.md#memory).
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
        if set(providers) & set(GPU_PROVIDERS):
            preload_cuda_libraries()
        with_options = [(p, provider_options(p)) for p in providers]
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


def cuda_problem(graph: Path) -> str | None:
    """Why onnxruntime's CUDA provider cannot run ``graph`` here, or None when it can: the
    cause onnxruntime gives (a library it could not load, a cuDNN it does not match), not
    only that it fell back to the CPU."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return (
            f"no CUDAExecutionProvider in the onnxruntime at {Path(ort.__file__).parent} "
            f"(version {ort.__version__}): install onnxruntime-gpu"
        )
    unloaded = preload_cuda_libraries()
    with tempfile.TemporaryFile("w+") as log:
        try:
            with _output_to(log):
                OnnxRuntimeSession(graph, CUDA_FIRST, strict=True)
        except InputError:
            log.flush()
            log.seek(0)
            said = [line.strip() for line in log.read().splitlines() if line.strip()]
        else:
            return None
    causes = [line for line in said if "rror" in line or "ailed" in line] or said
    cause = " | ".join([*causes[-3:], *unloaded.splitlines()[-3:]]) or "no message"
    return f"onnxruntime's CUDA provider could not start: {cause}"


@contextlib.contextmanager
def _output_to(file):
    """Send Python's prints (onnxruntime's "EP Error … falling back") and file descriptor 2
    (where its C++ logger writes) to ``file``."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(file.fileno(), 2)
    try:
        with contextlib.redirect_stdout(file):
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
