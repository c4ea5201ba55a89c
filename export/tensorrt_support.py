"""What TensorRT 10 can build from an ONNX graph: its documented operator support as data, and
a checker that names every node it would refuse, so that ``to_tensorrt.py`` (and the tests,
on machines without TensorRT) find out before a build is tried.

The table and the restrictions are transcribed from onnx-tensorrt's ``docs/operators.md`` for
TensorRT 10.15 (https://github.com/onnx/onnx-tensorrt/blob/main/docs/operators.md): opsets 9
to 24 inclusive; types DOUBLE (cast down to FLOAT by TensorRT), FLOAT32, FLOAT16, BFLOAT16,
INT32, INT64, BOOL, UINT8 only as a network input or output, and the quantized types (INT8,
INT4, FP8, FP4) only where a row lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx
from onnx import numpy_helper

OPSET_MIN, OPSET_MAX = 9, 24

# The "Y" rows of the operator matrix: operator, then its "Supported Types" column.
_MATRIX = """
Abs FP32 FP16 BF16 INT32 INT64
Acos FP32 FP16 BF16
Acosh FP32 FP16 BF16
Add FP32 FP16 BF16 INT32 INT64
And BOOL
ArgMax FP32 FP16 BF16 INT32 INT64
ArgMin FP32 FP16 BF16 INT32 INT64
Asin FP32 FP16 BF16
Asinh FP32 FP16 BF16
Atan FP32 FP16 BF16
Atanh FP32 FP16 BF16
Attention FP32 FP16 BF16 INT8 FP8
AveragePool FP32 FP16 BF16
BatchNormalization FP32 FP16 BF16
BlackmanWindow FP32 FP16
Cast FP32 FP16 BF16 INT32 INT64 UINT8 BOOL
CastLike FP32 FP16 BF16 INT32 INT64 UINT8 BOOL
Ceil FP32 FP16 BF16
Celu FP32 FP16 BF16
Clip FP32 FP16 BF16
Concat FP32 FP16 BF16 INT32 INT64 BOOL
Constant FP32 FP16 BF16 FP8 FP4 INT4 INT32 INT64 BOOL
ConstantOfShape FP32 FP16 BF16 FP8 FP4 INT4 INT32 INT64 BOOL
Conv FP32 FP16 BF16
ConvTranspose FP32 FP16 BF16
Cos FP32 FP16 BF16
Cosh FP32 FP16 BF16
CumSum FP32 FP16 BF16
DeformConv FP32 FP16
DepthToSpace FP32 FP16 BF16 INT32 INT64
DequantizeLinear INT8 FP8 FP4 INT4
Div FP32 FP16 BF16 INT32 INT64
Dropout FP32 FP16 BF16
Einsum FP32 FP16 BF16
Elu FP32 FP16 BF16
Equal FP32 FP16 BF16 INT32 INT64
Erf FP32 FP16 BF16
Exp FP32 FP16 BF16
Expand FP32 FP16 BF16 INT32 INT64 BOOL
EyeLike FP32 FP16 BF16 INT32 INT64 BOOL
Flatten FP32 FP16 BF16 INT32 INT64 BOOL
Floor FP32 FP16 BF16
Gather FP32 FP16 BF16 INT32 INT64 BOOL
GatherElements FP32 FP16 BF16 INT32 INT64 BOOL
GatherND FP32 FP16 BF16 INT32 INT64 BOOL
Gelu FP32 FP16 BF16 INT8 INT32 INT64
Gemm FP32 FP16 BF16
GlobalAveragePool FP32 FP16 BF16
GlobalLpPool FP32 FP16 BF16
GlobalMaxPool FP32 FP16 BF16
Greater FP32 FP16 BF16 INT32 INT64
GreaterOrEqual FP32 FP16 BF16 INT32 INT64
GridSample FP32 FP16
GroupNormalization FP32 FP16 BF16
GRU FP32 FP16 BF16
HammingWindow FP32 FP16
HannWindow FP32 FP16
HardSigmoid FP32 FP16 BF16
HardSwish FP32 FP16 BF16
Hardmax FP32 FP16 BF16
Identity FP32 FP16 BF16 INT32 INT64 BOOL
If FP32 FP16 BF16 INT32 INT64 BOOL
ImageScaler FP32 FP16 BF16
InstanceNormalization FP32 FP16 BF16
IsInf FP32 FP16 BF16
IsNaN FP32 FP16 BF16 INT32 INT64
LayerNormalization FP32 FP16 BF16
LeakyRelu FP32 FP16 BF16
Less FP32 FP16 BF16 INT32 INT64
LessOrEqual FP32 FP16 BF16 INT32 INT64
Log FP32 FP16 BF16
LogSoftmax FP32 FP16 BF16
Loop FP32 FP16 BF16 INT32 INT64 BOOL
LRN FP32 FP16 BF16
LSTM FP32 FP16 BF16
LpNormalization FP32 FP16 BF16
LpPool FP32 FP16 BF16
MatMul FP32 FP16 BF16
Max FP32 FP16 BF16 INT32 INT64
MaxPool FP32 FP16 BF16
Mean FP32 FP16 BF16 FP8 INT32 INT64
MeanVarianceNormalization FP32 FP16 BF16
Min FP32 FP16 BF16 INT32 INT64
Mish FP32 FP16
Mod FP32 FP16 BF16 INT32 INT64
Mul FP32 FP16 BF16 INT32 INT64
Neg FP32 FP16 BF16 INT32 INT64
NonMaxSuppression FP32 FP16
NonZero FP32 FP16
Not BOOL
OneHot FP32 FP16 BF16 INT32 INT64 BOOL
Or BOOL
Pad FP32 FP16 BF16 INT32 INT64
ParametricSoftplus FP32 FP16 BF16
Pow FP32 FP16 BF16 INT32 INT64
PRelu FP32 FP16 BF16
QuantizeLinear FP32 FP16 BF16
RandomNormal FP32 FP16 BF16
RandomNormalLike FP32 FP16 BF16
RandomUniform FP32 FP16 BF16
RandomUniformLike FP32 FP16 BF16
Range FP32 FP16 BF16 INT32 INT64
Reciprocal FP32 FP16 BF16
ReduceL1 FP32 FP16 BF16 INT32 INT64
ReduceL2 FP32 FP16 BF16 INT32 INT64
ReduceLogSum FP32 FP16 BF16 INT32 INT64
ReduceLogSumExp FP32 FP16 BF16 INT32 INT64
ReduceMax FP32 FP16 BF16 INT32 INT64
ReduceMean FP32 FP16 BF16 INT32 INT64
ReduceMin FP32 FP16 BF16 INT32 INT64
ReduceProd FP32 FP16 BF16 INT32 INT64
ReduceSum FP32 FP16 BF16 INT32 INT64
ReduceSumSquare FP32 FP16 BF16 INT32 INT64
Relu FP32 FP16 BF16 INT32 INT64
Reshape FP32 FP16 BF16 INT32 INT64 BOOL
Resize FP32 FP16 BF16
ReverseSequence FP32 FP16 BF16 INT32 INT64 BOOL
RMSNormalization FP32 FP16 BF16
RNN FP32 FP16 BF16
RoiAlign FP32 FP16
RotaryEmbedding FP32 FP16 BF16
Round FP32 FP16 BF16
STFT FP32
ScaledTanh FP32 FP16 BF16
Scan FP32 FP16 BF16
Scatter FP32 FP16 BF16 INT32 INT64
ScatterElements FP32 FP16 BF16 INT32 INT64
ScatterND FP32 FP16 BF16 INT32 INT64
Selu FP32 FP16 BF16
Shape FP32 FP16 BF16 INT32 INT64 BOOL
Shrink FP32 FP16 BF16 INT32 INT64
Sigmoid FP32 FP16 BF16
Sign FP32 FP16 BF16 INT32 INT64
Sin FP32 FP16 BF16
Sinh FP32 FP16 BF16
Size FP32 FP16 BF16 INT32 INT64 BOOL
Slice FP32 FP16 BF16 INT32 INT64 BOOL
Softmax FP32 FP16 BF16
Softplus FP32 FP16 BF16
Softsign FP32 FP16 BF16
SpaceToDepth FP32 FP16 BF16 INT32 INT64
Split FP32 FP16 BF16 INT32 INT64 BOOL
Sqrt FP32 FP16 BF16
Squeeze FP32 FP16 BF16 INT32 INT64 BOOL
Sub FP32 FP16 BF16 INT32 INT64
Sum FP32 FP16 BF16 INT32 INT64
Tan FP32 FP16 BF16
Tanh FP32 FP16 BF16
TensorScatter FP32 FP16 BF16 INT32
ThresholdedRelu FP32 FP16 BF16
Tile FP32 FP16 BF16 INT32 INT64 BOOL
TopK FP32 FP16 BF16 INT32 INT64
Transpose FP32 FP16 BF16 INT32 INT64 BOOL
Trilu FP32 FP16 BF16 INT32 INT64 BOOL
Unsqueeze FP32 FP16 BF16 INT32 INT64 BOOL
Upsample FP32 FP16 BF16
Where FP32 FP16 BF16 INT32 INT64 BOOL
Xor BOOL
"""
SUPPORTED: dict[str, frozenset[str]] = {
    row.split()[0]: frozenset(row.split()[1:]) for row in _MATRIX.strip().splitlines()
}

# The table's type names for ONNX element types. DOUBLE is absent: TensorRT casts it down to
# FLOAT, so a float64 tensor is checked as FP32 and reported (``Report.float64_nodes``).
_P = onnx.TensorProto
TYPE_NAMES = {
    _P.FLOAT: "FP32",
    _P.FLOAT16: "FP16",
    _P.BFLOAT16: "BF16",
    _P.INT32: "INT32",
    _P.INT64: "INT64",
    _P.INT8: "INT8",
    _P.UINT8: "UINT8",
    _P.BOOL: "BOOL",
    _P.FLOAT8E4M3FN: "FP8",
    _P.FLOAT4E2M1: "FP4",
    _P.INT4: "INT4",
}
REDUCE_OPS = frozenset(op for op in SUPPORTED if op.startswith("Reduce"))


@dataclass
class Report:
    """``problems``: one line per thing TensorRT would refuse (empty: every node is
    documented as buildable).
    ``float64_nodes``: nodes that compute in float64, which TensorRT runs in float32."""

    problems: list[str] = field(default_factory=list)
    float64_nodes: list[str] = field(default_factory=list)


@dataclass
class _Graph:
    """What the checks need to know about the tensors visible from a (sub)graph."""

    types: dict[str, onnx.TypeProto.Tensor]
    initializers: dict[str, onnx.TensorProto]
    constants: set[str]  # outputs of Constant nodes, which the parser reads as weights
    used: set[str]  # every tensor some node reads, or the model returns
    io: set[str]  # the model's own inputs and outputs


def default_opset(model: onnx.ModelProto) -> int | None:
    """The version of the default (ai.onnx) operator set the model imports."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return None


def unsupported(model: onnx.ModelProto) -> list[str]:
    """One readable line per node (or model property) TensorRT 10 would refuse; an empty
    list means every node is documented as buildable."""
    return check(model).problems


def check(model: onnx.ModelProto) -> Report:
    """Checks the opset, every node's operator, its input/output element types (from ONNX
    shape inference) and the documented restrictions that apply to it."""
    report = Report()
    opset = default_opset(model)
    if opset is None:
        report.problems.append("model: imports no ai.onnx opset")
        return report
    if not OPSET_MIN <= opset <= OPSET_MAX:
        report.problems.append(
            f"model: opset {opset} is outside TensorRT 10's range {OPSET_MIN}..{OPSET_MAX}"
        )
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    used = {o.name for o in graph.output} | _read_tensors(graph)
    io = {v.name for v in (*graph.input, *graph.output)}
    _check_graph(graph, _Graph({}, {}, set(), used, io), opset, "", report)
    return report


def _read_tensors(graph: onnx.GraphProto) -> set[str]:
    """Every tensor any node of ``graph`` or of its subgraphs reads."""
    names = set()
    for node in graph.node:
        names.update(node.input)
        for sub in _subgraphs(node):
            names |= _read_tensors(sub[1])
    return names


def _subgraphs(node: onnx.NodeProto) -> list[tuple[str, onnx.GraphProto]]:
    found = []
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            found.append((attr.name, attr.g))
        found.extend((f"{attr.name}[{i}]", g) for i, g in enumerate(attr.graphs))
    return found


def _check_graph(
    graph: onnx.GraphProto, outer: _Graph, opset: int, prefix: str, report: Report
) -> None:
    """Checks the nodes of ``graph`` (and of their subgraphs), which also see ``outer``."""
    scope = _Graph(
        types=dict(outer.types),
        initializers={**outer.initializers, **{i.name: i for i in graph.initializer}},
        constants=outer.constants
        | {o for n in graph.node if n.op_type == "Constant" for o in n.output},
        used=outer.used,
        io=outer.io,
    )
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.type.HasField("tensor_type"):
            scope.types[value.name] = value.type.tensor_type
    for init in graph.initializer:
        scope.types[init.name] = onnx.TypeProto.Tensor(elem_type=init.data_type)
    for index, node in enumerate(graph.node):
        label = f"{prefix}{node.name or f'node #{index}'} ({node.op_type})"
        problems = _check_node(node, scope, opset)
        report.problems.extend(f"{label}: {problem}" for problem in problems)
        names = [n for n in (*node.input, *node.output) if n]
        if any(_elem_type(scope, n) == _P.DOUBLE for n in names):
            report.float64_nodes.append(label)
        for attr, sub in _subgraphs(node):
            _check_graph(sub, scope, opset, f"{prefix}{node.name or index}/{attr}/", report)


def _elem_type(scope: _Graph, name: str) -> int:
    tensor = scope.types.get(name)
    return tensor.elem_type if tensor is not None else _P.UNDEFINED


def _check_node(node: onnx.NodeProto, scope: _Graph, opset: int) -> list[str]:
    if node.domain not in ("", "ai.onnx"):
        return [f"operator of domain {node.domain!r}: TensorRT needs a plugin for it"]
    if node.op_type not in SUPPORTED:
        return ["not supported by TensorRT 10 (onnx-tensorrt docs/operators.md)"]
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, "")
    except onnx.defs.SchemaError:
        return [f"not an ONNX operator at opset {opset}"]
    return _type_problems(node, schema, scope) + _restriction_problems(node, scope)


def _data_tensors(node: onnx.NodeProto, schema: onnx.defs.OpSchema) -> list[str]:
    """The tensors the table's "Supported Types" is about: those bound to the type
    constraint of the operator's data (the first input, else output, whose constraint admits
    several types: not Where's bool condition, not Equal's bool output or Shape's int64
    output, which ONNX itself fixes), plus Cast's output, which the row also covers."""

    def formal(params, index: int) -> str | None:
        return params[min(index, len(params) - 1)].type_str if params else None

    choices = {c.type_param_str: len(c.allowed_type_strs) for c in schema.type_constraints}
    candidates = [formal(schema.inputs, i) for i, name in enumerate(node.input) if name]
    candidates += [formal(schema.outputs, 0)]
    data = next((c for c in candidates if choices.get(c, 0) > 1), None)
    names = [n for i, n in enumerate(node.input) if n and formal(schema.inputs, i) == data]
    names += [
        n
        for i, n in enumerate(node.output)
        if n and (formal(schema.outputs, i) == data or node.op_type in ("Cast", "CastLike"))
    ]
    return names


def _type_problems(node: onnx.NodeProto, schema: onnx.defs.OpSchema, scope: _Graph) -> list[str]:
    """One line per element type the operator's row lacks (naming its tensors), and one per
    UINT8 tensor that is not a network input or output."""
    problems = []
    # Each tensor is checked where it is made: by this node, or as an initializer it reads.
    made_here = [*node.output, *(n for n in node.input if n in scope.initializers)]
    for name in (n for n in made_here if n):
        if _elem_type(scope, name) == _P.UINT8 and name not in scope.io:
            problems.append(f"{name!r} is UINT8, which TensorRT allows only as a network I/O")
    allowed = SUPPORTED[node.op_type]
    refused: dict[int, list[str]] = {}
    for name in _data_tensors(node, schema):
        elem = _elem_type(scope, name)
        if ("FP32" if elem == _P.DOUBLE else TYPE_NAMES.get(elem)) not in allowed:
            refused.setdefault(elem, []).append(name)
    for elem, names in refused.items():
        if elem == _P.UNDEFINED:
            problems.append(f"ONNX shape inference does not know the element type of {names}")
        else:
            problems.append(
                f"{_P.DataType.Name(elem)} tensors {names}; TensorRT supports {node.op_type} "
                f"for {', '.join(sorted(allowed))}"
            )
    return problems


def _restriction_problems(node: onnx.NodeProto, scope: _Graph) -> list[str]:
    """The documented restrictions of the operators our graphs use (and Dropout's)."""
    op, inputs = node.op_type, list(node.input)
    second = inputs[1] if len(inputs) > 1 else ""
    weights = scope.initializers.keys() | scope.constants
    if op in REDUCE_OPS and second and second not in scope.initializers:
        return [f"axes {second!r} is not an initializer (TensorRT needs it to be one)"]
    if op in ("Squeeze", "Unsqueeze") and second and second not in weights:
        return [f"axes {second!r} is computed in the graph; TensorRT needs a constant"]
    if op == "Squeeze" and not second and not any(a.name == "axes" for a in node.attribute):
        # onnx-tensorrt's importSqueeze: "Cannot infer squeeze dimensions from a dynamic
        # shape! Please re-export your model with the Squeeze axes input set."
        tensor = scope.types.get(inputs[0])
        dims = tensor.shape.dim if tensor is not None and tensor.HasField("shape") else None
        if dims is None or not all(d.HasField("dim_value") for d in dims):
            return ["no axes and an input of dynamic shape: TensorRT cannot infer the axes"]
    if op == "CumSum" and second not in weights:
        return [f"axis {second!r} is not a build-time constant"]
    if op == "Dropout" and len(inputs) > 2 and inputs[2]:
        training = scope.initializers.get(inputs[2])
        if training is None or numpy_helper.to_array(training).any():
            return ["training_mode must be an initializer that is false"]
    if op == "LayerNormalization":
        extra = [name for name in node.output[1:] if name in scope.used]
        if extra:
            return [f"outputs {extra} are used; TensorRT supports only the first output Y"]
    return []
