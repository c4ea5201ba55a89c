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
audio frontend stays f32 at every precision, as below. This makes int8 the fastest CPU
profile (docs/performance.md).

In bf16 an audio graph runs in two parts: its frontend (DFT, mel, log, floor: everything the
first convolution reads) in f32 and the network after it in bf16. A log-mel made in bf16
loses the quiet bins' detail, at no gain in speed (docs/performance.md#the-profiles).

A family whose audio graph takes a track-wide floor (TTMR++) computes each window's log-mel
twice: in the floor graph, for the track's floor, then in the audio graph. ``floored_pair``
finds the one tensor the audio graph reads from what it computes exactly as the floor graph
does (the log-mel), makes it a second output of the floor graph and cuts the audio graph
there, so the audio pass can start from the floor pass's log-mel (a ``HandOver``: the
``Embedder`` keeps it between the two passes, for up to ``KEPT_WINDOWS`` windows)."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import queue
from pathlib import Path
from typing import NamedTuple

import numpy as np

from runtime.engines import HandOver
from runtime.errors import InputError, ModelFolderError, TtmrError, first_line, missing_dependency

# Each precision's inference precision in OpenVINO's terms: what its float layers compute
# in. OpenVINO's own default on a CPU with bf16 units is bf16, so fp32 says f32 explicitly:
# fp32 stays fp32-exact. int8's float layers are bf16 where the CPU has bf16 units.
INFERENCE_PRECISION = {"fp32": "f32", "int8": "bf16", "bf16": "bf16"}
# Activations quantised per group of this many inputs for int8 weights: faster than
# OpenVINO's default of 32 at the same accuracy (docs/performance.md#the-profiles).
ACTIVATION_GROUP = 128
FRONTEND = "frontend_features"  # the f32 frontend's output, the bf16 network's input
LOG_MEL = "log_mel"  # what the floor graph hands the audio graph (``floored_pair``)
# Windows whose log-mels one call keeps from the floor pass for the audio pass: a TTMR++
# log-mel is 0.5 MB, so about 32 MB; a longer track's frontend runs twice instead.
KEPT_WINDOWS = 64


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


def openvino_problem(precision: str) -> TtmrError | None:
    """Why OpenVINO cannot run ``precision`` here (the error to raise, whose message says
    it), or None when it can."""
    if precision not in INFERENCE_PRECISION:
        return InputError(f"OpenVINO runs {tuple(INFERENCE_PRECISION)} here, not {precision}")
    if not openvino_installed():
        return missing_dependency("OpenVINO", extra="openvino", needed_for="backend 'openvino'")
    if precision == "bf16" and not has_bf16_units():
        return InputError(
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


def cut(model, boundary, name: str) -> tuple:
    """``model`` in two at ``boundary`` (an output of one of its nodes): the head computes
    it from the parameters it needs; the tail takes it as a parameter called ``name``,
    with the other parameters it still reads."""
    import openvino

    tail = model.clone()  # cut below; the head keeps the original nodes
    head = openvino.Model([boundary], used_parameters(model, [boundary]), "head")
    # A clone's nodes are new, in the same order.
    names = [op.get_name() for op in model.get_ordered_ops()]
    node = tail.get_ordered_ops()[names.index(boundary.get_node().get_name())]
    source = node.output(boundary.get_index())
    given = openvino.opset13.parameter(source.get_partial_shape(), source.get_element_type())
    given.output(0).set_names({name})
    for target in source.get_target_inputs():
        target.replace_source_output(given.output(0))
    results = tail.get_results()
    others = used_parameters(tail, [r.output(0) for r in results])
    return head, openvino.Model(results, [given, *others], "tail")


def split_at_frontend(model) -> list:
    """``[frontend, network]`` models of an audio graph, the network's first input named
    ``FRONTEND``; ``[model]`` whole for a graph without convolutions (a text graph)."""
    boundary = first_convolution_input(model)
    return [model] if boundary is None else list(cut(model, boundary, FRONTEND))


def parts_at(model, precision: str) -> list:
    """The models ``model`` runs as at ``precision``: below fp32, split at its frontend
    (which stays f32); at fp32, whole."""
    return [model] if precision == "fp32" else split_at_frontend(model)


def structure_keys(model, constants: set | None = None) -> dict[str, str]:
    """Each node's structural key (by node name): its type, attributes and inputs' keys,
    with constants by value and parameters by name, so that two graphs' nodes computing
    the same thing from the same inputs share a key. With ``constants`` (dtype and shape
    pairs), only constants of those are hashed, and only nodes fed by keyed nodes are
    keyed: a large graph's weights are never read."""
    keys: dict[str, str] = {}
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind == "Parameter":
            text = f"Parameter {op.get_friendly_name()}"
        elif kind == "Constant":
            dtype_shape = (str(op.get_element_type()), tuple(op.get_output_shape(0)))
            if constants is not None and dtype_shape not in constants:
                continue
            text = f"Constant {dtype_shape} {hashlib.sha1(op.get_data().tobytes()).hexdigest()}"
        else:
            sources = [(v.get_node().get_name(), v.get_index()) for v in op.input_values()]
            if any(node not in keys for node, _ in sources):
                continue
            inputs = [f"{keys[node]}:{index}" for node, index in sources]
            text = f"{kind} {sorted(op.get_attributes().items())} {inputs}"
        keys[op.get_name()] = hashlib.sha1(text.encode()).hexdigest()
    return keys


def shared_output(audio, floor) -> tuple | None:
    """The one tensor the audio graph reads from what it computes as the floor graph does
    (TTMR++: the unfloored log-mel), as ``(floor graph's output, audio graph's output)``, or
    None where there is not exactly one: the floor pass can hand it to the audio pass."""
    floor_keys = structure_keys(floor)
    constants = {
        (str(op.get_element_type()), tuple(op.get_output_shape(0)))
        for op in floor.get_ordered_ops()
        if op.get_type_name() == "Constant"
    }
    known = set(floor_keys.values())
    audio_keys = structure_keys(audio, constants)
    shared = {name for name, key in audio_keys.items() if key in known}
    read = {
        (value.get_node().get_name(), value.get_index()): value
        for op in audio.get_ordered_ops()
        if op.get_name() not in shared
        for value in op.input_values()
        if value.get_node().get_name() in shared
        and value.get_node().get_type_name() not in ("Constant", "Parameter")
    }
    if len(read) != 1:
        return None
    (((node_name, index), in_audio),) = read.items()
    key = audio_keys[node_name]
    in_floor = next(op for op in floor.get_ordered_ops() if floor_keys.get(op.get_name()) == key)
    return in_floor.output(index), in_audio


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


def not_loadable(path: Path, err: RuntimeError) -> ModelFolderError:
    return ModelFolderError(f"{path}: not a graph OpenVINO can load ({first_line(err)})")


def read_model(path: Path):
    try:
        return core().read_model(str(path))
    except RuntimeError as err:
        raise not_loadable(path, err) from None


class FlooredPair(NamedTuple):
    """``floored_pair``'s sessions, and what the floor one hands the audio one (or None)."""

    floor: OpenVINOSession
    audio: OpenVINOSession
    hand_over: HandOver | None


class OpenVINOSession:
    """One graph compiled for the CPU at ``precision`` (a ``runtime.engines.Session``).
    Below fp32 an audio graph runs as an f32 frontend and a network at the lower precision.
    ``models``: the graph already read and cut into parts, each handing its output to the
    next (``floored_pair``), or whole (``whole_graph``). Dynamic batch and text length are
    kept from the graph. Calls from several threads each take idle infer requests
    (OpenVINO's requests are not thread-safe)."""

    def __init__(
        self, path: Path, precision: str, threads: int | None = None, models: list | None = None
    ):
        problem = openvino_problem(precision)
        if problem:
            raise problem
        config = {
            "INFERENCE_PRECISION_HINT": inference_precision(precision),
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": "1",
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        if precision == "int8":
            config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = str(ACTIVATION_GROUP)
        if models is None:
            models = parts_at(read_model(path), precision)
        *early, network = models
        try:
            if precision == "int8" and not quantized(network):
                network = with_int8_weights(network)
            exact = {**config, "INFERENCE_PRECISION_HINT": "f32"}
            self.parts = [core().compile_model(part, "CPU", exact) for part in early]
            self.parts.append(core().compile_model(network, "CPU", config))
        except RuntimeError as err:
            raise not_loadable(path, err) from None
        self.inputs = [{port.get_any_name() for port in part.inputs} for part in self.parts]
        # What each part hands on: the next part's first input (``cut`` puts it first).
        self.hands_on = [part.inputs[0].get_any_name() for part in self.parts[1:]] + [None]
        # What the plugin settled on (a hint the CPU cannot honour is dropped, not an error).
        last = self.parts[-1]
        self.runs_in = last.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        runs = f"int8, float layers in {self.runs_in}" if precision == "int8" else None
        self.providers = [f"OpenVINO CPU ({runs or f'inference precision {self.runs_in}'})"]
        self.threads = int(last.get_property("INFERENCE_NUM_THREADS"))
        self.outputs = {name for port in last.outputs for name in port.get_names()}
        self.path = path
        self._idle: queue.SimpleQueue = queue.SimpleQueue()

    @classmethod
    def whole_graph(cls, path: Path, precision: str, threads: int | None = None) -> OpenVINOSession:
        """The graph compiled whole at ``precision``, an audio graph's frontend included:
        OpenVINO's own way of running it (``Tuning.openvino_whole_graphs``)."""
        return cls(path, precision, threads, models=[read_model(path)])

    @classmethod
    def floored_pair(
        cls, floor_path: Path, audio_path: Path, precision: str, threads: int | None = None
    ) -> FlooredPair:
        """The floor graph's session (f32), which also outputs the log-mel it computes as
        ``LOG_MEL``, and the audio graph's, which starts from that log-mel where a feed
        gives it: each window's frontend then runs once, not twice. Where the two graphs
        share no such tensor, two plain sessions and no hand-over."""
        floor, audio = read_model(floor_path), read_model(audio_path)
        found = shared_output(audio, floor)
        hand_over = None if found is None else HandOver(LOG_MEL, KEPT_WINDOWS)
        if found is None:
            audio_parts = parts_at(audio, precision)
        else:
            in_floor, in_audio = found
            in_floor.get_tensor().add_names({LOG_MEL})
            floor.add_outputs([in_floor])
            head, rest = cut(audio, in_audio, LOG_MEL)
            audio_parts = [head, *parts_at(rest, precision)]
        return FlooredPair(
            cls(floor_path, "fp32", threads, models=[floor]),
            cls(audio_path, precision, threads, models=audio_parts),
            hand_over,
        )

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """``names`` from ``feed``; a part whose output the feed already has (the floor
        graph's ``LOG_MEL``) is skipped."""
        if not self.parts:
            raise TtmrError(f"{self.path}: the session is closed")
        try:
            requests = self._idle.get_nowait()
        except queue.Empty:
            requests = [part.create_infer_request() for part in self.parts]
        try:
            values = {name: np.ascontiguousarray(a) for name, a in feed.items()}
            for request, inputs, output in zip(requests, self.inputs, self.hands_on, strict=True):
                if output in values:
                    continue
                request.infer({name: values[name] for name in inputs})
                if output:
                    values[output] = request.get_output_tensor(0).data
            # Copies: the request's output buffers are reused by its next call.
            return [requests[-1].get_tensor(name).data.copy() for name in names]
        finally:
            self._idle.put(requests)

    def close(self) -> None:
        """Frees the compiled graph and its infer requests now."""
        self.parts = []
        while not self._idle.empty():
            self._idle.get_nowait()
