"""The machine's matrix-product limit per precision, for scripts/bench.py's "share of peak":
the best GEMM rate any engine here reaches. One library's rate is not the machine's: on
AMD EPYC, PyTorch's fp32 GEMM (MKL) measured 201 GFLOP/s where onnxruntime's reached 428.

Engines: PyTorch (``torch.mm``; int8 ``torch._int_mm``), onnxruntime (MatMul; int8
MatMulInteger, u8 × s8) and OpenVINO (MatMul; fp32 at f32, bf16 at bf16 inference
precision), each on ``threads`` threads, two ``size``² matrices, the best of ``repeats``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import numpy as np

from runtime.engines.cpu import BF16_FLAGS, INT8_FLAGS, named_flags
from runtime.engines.openvino import core, openvino_installed

Work = Callable[[], object]


def matmul_graph(size: int, integer: bool) -> bytes:
    """An ONNX graph of one ``[size, size]`` product: MatMul of floats, or MatMulInteger of
    uint8 by int8."""
    from onnx import TensorProto, helper

    kinds = (TensorProto.UINT8, TensorProto.INT8) if integer else (TensorProto.FLOAT,) * 2
    out = TensorProto.INT32 if integer else TensorProto.FLOAT
    node = helper.make_node("MatMulInteger" if integer else "MatMul", ["a", "b"], ["y"])
    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        [node],
        "gemm",
        [value(name, kind, [size, size]) for name, kind in zip("ab", kinds, strict=True)],
        [value("y", out, [size, size])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def torch_work(size: int, threads: int) -> dict[str, Work]:
    import torch

    torch.set_num_threads(threads)
    rng = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=rng) for _ in range(2))
    return {
        "fp32": partial(torch.mm, a, b),
        "bf16": partial(torch.mm, a.bfloat16(), b.bfloat16()),
        "int8": partial(torch._int_mm, a.to(torch.int8), b.to(torch.int8)),
    }


def onnxruntime_work(size: int, threads: int) -> dict[str, Work]:
    import onnxruntime as ort

    from runtime.engines.onnxruntime import session_options

    rng = np.random.default_rng(0)
    feeds = {
        "fp32": {name: rng.standard_normal((size, size), np.float32) for name in "ab"},
        "int8": {
            "a": rng.integers(0, 255, (size, size), np.uint8),
            "b": rng.integers(-127, 127, (size, size), np.int8),
        },
    }
    work = {}
    for precision, feed in feeds.items():
        graph = matmul_graph(size, integer=precision == "int8")
        session = ort.InferenceSession(
            graph, session_options(threads), providers=["CPUExecutionProvider"]
        )
        work[precision] = partial(session.run, None, feed)
    return work


def openvino_work(size: int, threads: int) -> dict[str, Work]:
    if not openvino_installed():
        return {}
    rng = np.random.default_rng(0)
    feed = {name: rng.standard_normal((size, size), np.float32) for name in "ab"}
    work = {}
    for precision, hint in (("fp32", "f32"), ("bf16", "bf16")):
        model = core().read_model(matmul_graph(size, integer=False), b"")
        config = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": str(threads)}
        request = core().compile_model(model, "CPU", config).create_infer_request()
        work[precision] = partial(request.infer, feed)
    return work


def best_seconds(run: Work, repeats: int) -> float | None:
    """The fastest of ``repeats`` calls after a warm-up; None where the engine has no kernel
    for it (its error)."""
    try:
        run()
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - started)
    except (RuntimeError, ValueError):
        return None
    return min(seconds)


def gemm_peaks(threads: int, size: int = 2048, repeats: int = 5) -> dict[str, dict]:
    """Per precision, ``{"gflops": best rate, "engine": whose}``; both None for a precision
    this CPU has no units for (emulated, it would take minutes to time)."""
    units = {
        "fp32": True,
        "bf16": bool(named_flags(BF16_FLAGS)),
        "int8": bool(named_flags(INT8_FLAGS)),
    }
    engines = {
        "PyTorch": torch_work(size, threads),
        "onnxruntime": onnxruntime_work(size, threads),
        "OpenVINO": openvino_work(size, threads),
    }
    peaks = {}
    for precision, has_units in units.items():
        rates = {}
        for engine, work in engines.items():
            if has_units and precision in work:
                seconds = best_seconds(work[precision], repeats)
                if seconds:
                    rates[engine] = 2 * size**3 / seconds / 1e9
        best = max(rates, key=rates.get, default=None)
        peaks[precision] = {"gflops": rates.get(best), "engine": best}
    return peaks
