"""OpenVINO sessions: the same exported ONNX graphs, compiled by OpenVINO's CPU plugin, which
runs bf16 on AMX or AVX-512-BF16 units. OpenVINO is an optional extra (``openvino``); this
module imports it only when a session is made.

In int8 a static (QDQ) audio graph (TTMR++'s) runs as it is: its convolutions and MatMuls in
int8, its float layers (the early convolutions quantize.py keeps in float, the attention
scores) in bf16 where the CPU has bf16 units, else f32. A graph onnxruntime quantised
dynamically runs slower on OpenVINO than its fp32 graph, so a tower without a static graph
(every text tower, CLAP's and MusCALL's audio) is loaded from fp32 with its MatMul weights
stored as int8, one scale per output channel, and its activations quantised on the fly in
groups of ``ACTIVATION_GROUP`` inputs, for the int8 dot-product units (VNNI, AMX-INT8). The
audio frontend stays f32 at every precision, as below. On the full-size TTMR++ demo this
made int8 the fastest CPU profile at audio cosine 0.9993 and text 0.9990 to fp32 (README,
"OpenVINO and bf16").

In bf16 an audio graph runs in two parts: its frontend (DFT, mel, log, floor: everything the
first convolution reads) in f32 and the network after it in bf16. A log-mel made in bf16
loses the quiet bins' detail: on the full-size TTMR++ demo, the whole graph in bf16 gave an
audio cosine to fp32 of 0.953 (min over 300 tracks), the split one 0.99978, at the same
speed (scripts/bench.py; README, "OpenVINO and bf16")."""

from __future__ import annotations

import functools
import importlib.util
import queue
from pathlib import Path

import numpy as np

from runtime.errors import InputError, first_line

# Each precision's inference precision in OpenVINO's terms: what its float layers compute
# in. OpenVINO's own default on a CPU with bf16 units is bf16, so fp32 says f32 explicitly:
# fp32 stays fp32-exact. int8's float layers are bf16 where the CPU has bf16 units.
INFERENCE_PRECISION = {"fp32": "f32", "int8": "bf16", "bf16": "bf16"}
# Activations quantised per group of this many inputs for int8 weights: 128 measured 30 %
# faster than OpenVINO's default 32 on one query, at a text cosine to fp32 of 0.9991.
ACTIVATION_GROUP = 128
FRONTEND = "frontend_features"  # the f32 frontend's output, the bf16 network's input
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


def has_bf16_units() -> bool:
    return "BF16" in cpu_capabilities()


def inference_precision(precision: str) -> str:
    """What ``precision``'s float layers compute in here (int8's: f32 without bf16 units)."""
    wanted = INFERENCE_PRECISION[precision]
    return wanted if wanted == "f32" or has_bf16_units() else "f32"


def openvino_problem(precision: str) -> str | None:
    """Why OpenVINO cannot run ``precision`` here, or None when it can."""
    if precision not in INFERENCE_PRECISION:
        return f"OpenVINO runs {tuple(INFERENCE_PRECISION)} here, not {precision}"
    if not openvino_installed():
        return f"OpenVINO is not installed ({INSTALL})"
    if precision == "bf16" and not has_bf16_units():
        return (
            "this CPU has no bf16 units (AMX-BF16 or AVX-512-BF16); OpenVINO's CPU plugin "
            f"reports {', '.join(cpu_capabilities())}"
        )
    return None


def first_convolution_input(model):
    """The tensor an audio graph's frontend hands to its network (the first convolution's
    input), or None for a graph without convolutions (a text graph)."""
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Convolution":
            return op.input_value(0)
    return None


def used_parameters(model, results) -> list:
    """The model's parameters that ``results`` still depend on."""
    seen, pending, found = set(), [r.get_node() for r in results], set()
    while pending:
        node = pending.pop()
        if node.get_name() in seen:  # unique per node (Python wrappers are not)
            continue
        seen.add(node.get_name())
        if node.get_type_name() == "Parameter":
            found.add(node.get_friendly_name())
        pending.extend(value.get_node() for value in node.input_values())
    return [p for p in model.get_parameters() if p.get_friendly_name() in found]


def split_at_frontend(path: Path) -> list:
    """``[frontend, network]`` models of an audio graph, the network's first input named
    ``FRONTEND``; ``[model]`` whole for a graph without convolutions (read once either
    way: a text graph is hundreds of MB)."""
    import openvino

    head = core().read_model(str(path))
    boundary = first_convolution_input(head)
    if boundary is None:
        return [head]
    network = head.clone()  # cut below; the frontend keeps the original nodes
    frontend = openvino.Model([boundary], used_parameters(head, [boundary]), "frontend")
    cut = first_convolution_input(network)
    features = openvino.opset13.parameter(cut.get_partial_shape(), cut.get_element_type())
    features.output(0).set_names({FRONTEND})
    for target in cut.get_target_inputs():
        target.replace_source_output(features.output(0))
    results = network.get_results()
    others = used_parameters(network, [r.output(0) for r in results])
    return [frontend, openvino.Model(results, [features, *others], "network")]


def quantized(model) -> bool:
    """Whether a loaded graph is already int8 (QDQ pairs load as FakeQuantize)."""
    return any(op.get_type_name() == "FakeQuantize" for op in model.get_ordered_ops())


def with_int8_weights(model):
    """``model`` with each MatMul's 2-D float32 weight stored as int8 and one scale per
    output channel (symmetric, the largest magnitude → 127), multiplied back in f32 by
    OpenVINO's compressed-weight kernels."""
    import openvino

    ops = openvino.opset13
    for op in model.get_ordered_ops():
        weight = op.input_value(1).get_node() if op.get_type_name() == "MatMul" else None
        if weight is None or weight.get_type_name() != "Constant":
            continue
        values = weight.get_data()
        if values.ndim != 2 or values.dtype != np.float32:
            continue
        # [K, N] is reduced over K (axis 0); transposed, [N, K] over axis 1.
        axis = 1 if op.get_attributes()["transpose_b"] else 0
        scale = np.abs(values).max(axis=axis, keepdims=True) / 127.0
        scale[scale == 0] = 1.0
        stored = np.clip(np.round(values / scale), -127, 127).astype(np.int8)
        restored = ops.multiply(
            ops.convert(ops.constant(stored), openvino.Type.f32), ops.constant(scale)
        )
        op.input(1).replace_source_output(restored.output(0))
    return model


class OpenVINOSession:
    """One graph compiled for the CPU at ``precision``; ``run`` has ``GraphSession``'s
    signature. Below fp32 an audio graph runs as an f32 frontend and a network at the lower
    precision (unless ``split_frontend`` is False: the bench's row of OpenVINO's own
    whole-graph bf16). Dynamic batch and text length are kept from the graph. Calls from
    several threads each take idle infer requests (OpenVINO's requests are not
    thread-safe)."""

    def __init__(
        self,
        path: Path,
        precision: str,
        threads: int | None = None,
        split_frontend: bool = True,
    ):
        problem = openvino_problem(precision)
        if problem:
            raise InputError(problem)
        config = {
            "INFERENCE_PRECISION_HINT": inference_precision(precision),
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": "1",
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        if precision == "int8":
            config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = str(ACTIVATION_GROUP)
        try:
            split = split_frontend and precision != "fp32"
            *frontend, network = (
                split_at_frontend(path) if split else [core().read_model(str(path))]
            )
            if precision == "int8" and not quantized(network):
                network = with_int8_weights(network)
            exact = {**config, "INFERENCE_PRECISION_HINT": "f32"}
            self.parts = [core().compile_model(part, "CPU", exact) for part in frontend]
            self.parts.append(core().compile_model(network, "CPU", config))
        except RuntimeError as err:
            raise InputError(f"{path}: not a graph OpenVINO can load ({first_line(err)})") from None
        self.inputs = [{port.get_any_name() for port in part.inputs} for part in self.parts]
        # What the plugin settled on (a hint the CPU cannot honour is dropped, not an error).
        last = self.parts[-1]
        self.runs_in = last.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        runs = f"int8, float layers in {self.runs_in}" if precision == "int8" else None
        self.providers = [f"OpenVINO CPU ({runs or f'inference precision {self.runs_in}'})"]
        self.threads = int(last.get_property("INFERENCE_NUM_THREADS"))
        self._idle: queue.SimpleQueue = queue.SimpleQueue()

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            requests = self._idle.get_nowait()
        except queue.Empty:
            requests = [part.create_infer_request() for part in self.parts]
        try:
            values = {name: np.ascontiguousarray(a) for name, a in feed.items()}
            for request, inputs in zip(requests, self.inputs, strict=True):
                request.infer({name: values[name] for name in inputs})
                values[FRONTEND] = request.get_output_tensor(0).data  # used by the next part
            # Copies: the request's output buffers are reused by its next call.
            return [requests[-1].get_tensor(name).data.copy() for name in names]
        finally:
            self._idle.put(requests)
