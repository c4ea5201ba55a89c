"""OpenVINO sessions: the same exported ONNX graphs, compiled by OpenVINO's CPU plugin, which
runs bf16 on AMX or AVX-512-BF16 units. OpenVINO is an optional extra (``openvino``); this
module imports it only when a session is made."""

from __future__ import annotations

import functools
import importlib.util
import queue
from pathlib import Path

import numpy as np

from runtime.errors import InputError, first_line

# Each precision's inference precision in OpenVINO's terms. OpenVINO's own default on a CPU
# with bf16 units is bf16, so fp32 and int8 (whose float parts stay float32, as on
# onnxruntime) say f32 explicitly: fp32 stays fp32-exact.
INFERENCE_PRECISION = {"fp32": "f32", "int8": "f32", "bf16": "bf16"}
INSTALL = "pip install 'ttmr-runtime[openvino]' (or: pip install openvino)"


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


@functools.cache
def core():
    import openvino

    return openvino.Core()


def cpu_capabilities() -> list[str]:
    """What OpenVINO's CPU plugin says this CPU runs natively (``FP32``, ``INT8``, ``BF16``…)."""
    return list(core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def openvino_problem(precision: str) -> str | None:
    """Why OpenVINO cannot run ``precision`` here, or None when it can."""
    if precision not in INFERENCE_PRECISION:
        return f"OpenVINO runs {tuple(INFERENCE_PRECISION)} here, not {precision}"
    if not openvino_installed():
        return f"OpenVINO is not installed ({INSTALL})"
    if precision == "bf16" and "BF16" not in cpu_capabilities():
        return (
            "this CPU has no bf16 units (AMX-BF16 or AVX-512-BF16); OpenVINO's CPU plugin "
            f"reports {', '.join(cpu_capabilities())}"
        )
    return None


class OpenVINOSession:
    """One graph compiled for the CPU at ``precision``; ``run`` has ``GraphSession``'s
    signature. Dynamic batch and text length are kept from the graph. Calls from several
    threads each take an idle infer request (OpenVINO's requests are not thread-safe)."""

    def __init__(self, path: Path, precision: str, threads: int | None = None):
        problem = openvino_problem(precision)
        if problem:
            raise InputError(problem)
        config = {
            "INFERENCE_PRECISION_HINT": INFERENCE_PRECISION[precision],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": "1",
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        try:
            self.compiled = core().compile_model(str(path), "CPU", config)
        except RuntimeError as err:
            raise InputError(f"{path}: not a graph OpenVINO can load ({first_line(err)})") from None
        # What the plugin settled on (a hint the CPU cannot honour is dropped, not an error).
        self.runs_in = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.providers = [f"OpenVINO CPU (inference precision {self.runs_in})"]
        self.threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        self._idle: queue.SimpleQueue = queue.SimpleQueue()

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            request = self._idle.get_nowait()
        except queue.Empty:
            request = self.compiled.create_infer_request()
        try:
            request.infer({name: np.ascontiguousarray(a) for name, a in feed.items()})
            # Copies: the request's output buffers are reused by its next call.
            return [request.get_tensor(name).data.copy() for name in names]
        finally:
            self._idle.put(request)
