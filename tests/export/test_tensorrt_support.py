"""TensorRT 10's documented ONNX support (export/tensorrt_support.py): our graphs against it,
and hand-built graphs that prove each check can refuse."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.tensorrt_support import check, unsupported

FAMILIES = [
    "small_model_dir",
    "small_clap_model_dir",
    "small_muscall_model_dir",
    pytest.param("demo_model_dir", marks=pytest.mark.slow),
    pytest.param("demo_clap_model_dir", marks=pytest.mark.slow),
    pytest.param("demo_muscall_model_dir", marks=pytest.mark.slow),
]


def load_graph(model_dir, tower: str, precision: str = "fp32") -> onnx.ModelProto:
    manifest = json.loads((model_dir / "manifest.json").read_text())
    name = manifest[tower]["file"] if precision == "fp32" else manifest[precision][tower]
    return onnx.load(str(model_dir / name))


@pytest.mark.parametrize("tower", ["audio", "text"])
@pytest.mark.parametrize("folder", FAMILIES)
def test_graphs_pass_the_tensorrt_check(folder, tower, request):
    assert unsupported(load_graph(request.getfixturevalue(folder), tower)) == []


@pytest.mark.parametrize(
    "folder", ["small_model_dir", pytest.param("demo_model_dir", marks=pytest.mark.slow)]
)
def test_ttmrpp_floor_graph_passes_the_tensorrt_check(folder, request):
    graph = load_graph(request.getfixturevalue(folder), "floor")
    assert unsupported(graph) == [] and check(graph).float64_nodes == []


def test_only_clap_and_muscall_audio_compute_in_float64_which_tensorrt_runs_in_float32(
    small_model_dir, small_clap_model_dir, small_muscall_model_dir
):
    for folder in (small_clap_model_dir, small_muscall_model_dir):
        float64 = check(load_graph(folder, "audio")).float64_nodes
        assert any("(MatMul)" in node for node in float64)  # the DFT stages of the frontend
    for folder, tower in [
        (small_model_dir, "audio"),
        (small_model_dir, "text"),
        (small_clap_model_dir, "text"),
        (small_muscall_model_dir, "text"),
    ]:
        assert check(load_graph(folder, tower)).float64_nodes == []


@pytest.mark.parametrize("tower", ["audio", "text"])
@pytest.mark.parametrize(
    "folder", ["small_fp16_dir", "small_clap_fp16_dir", "small_muscall_fp16_dir"]
)
def test_fp16_graphs_pass_the_tensorrt_check(folder, tower, request):
    assert unsupported(load_graph(request.getfixturevalue(folder), tower, "fp16")) == []


# Hand-built graphs: each case gives a model TensorRT refuses (bad=True) and its nearest
# buildable twin (bad=False), and the words the refusal must contain.
FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64


def value(name: str, elem: int, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def model(nodes, inputs, outputs, initializers=(), opset: int = 18) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=list(initializers))
    built = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(built)
    return built


def constant(name: str, values, dtype=np.int64) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, dtype=dtype), name)


def reduce_axes_from_an_input(bad: bool):
    """ReduceMean at opset 18 takes its axes as an input: TensorRT needs an initializer."""
    inputs = [value("x", FLOAT, [2, 3])] + ([value("axes", INT64, [1])] if bad else [])
    initializers = [] if bad else [constant("axes", [1])]
    node = helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="mean")
    return model([node], inputs, [value("y", FLOAT, [2, 1])], initializers), "mean (ReduceMean)"


def an_operator_tensorrt_lacks(bad: bool):
    op = "DFT" if bad else "Relu"
    node = helper.make_node(op, ["x"], ["y"], name="spectrum")
    shape = [1, 16, 2] if bad else [1, 16, 1]
    built = model([node], [value("x", FLOAT, [1, 16, 1])], [value("y", FLOAT, shape)], opset=20)
    return built, "spectrum (DFT): not supported by TensorRT 10"


def integer_matmul(bad: bool):
    """MatMulInteger is one of the table's "N" rows."""
    elem = TensorProto.UINT8 if bad else FLOAT
    op = "MatMulInteger" if bad else "MatMul"
    out = TensorProto.INT32 if bad else FLOAT
    node = helper.make_node(op, ["a", "b"], ["c"], name="product")
    inputs = [value("a", elem, [2, 3]), value("b", elem, [3, 4])]
    built = model([node], inputs, [value("c", out, [2, 4])])
    return built, "product (MatMulInteger): not supported by TensorRT 10"


def matmul_in_int32(bad: bool):
    """ONNX has MatMul in INT32; TensorRT's MatMul row lists FP32, FP16 and BF16 only."""
    elem = TensorProto.INT32 if bad else FLOAT
    node = helper.make_node("MatMul", ["a", "b"], ["c"], name="product")
    inputs = [value("a", elem, [2, 3]), value("b", elem, [3, 4])]
    built = model([node], inputs, [value("c", elem, [2, 4])])
    return built, "product (MatMul): INT32 tensors ['a', 'b', 'c']"


def squeeze_without_axes(bad: bool):
    """Without axes, TensorRT's parser infers them from the shape, which must be static."""
    node = helper.make_node("Squeeze", ["x"], ["y"], name="flat")
    shape = ["batch", 1] if bad else [2, 1]
    built = model([node], [value("x", FLOAT, shape)], [value("y", FLOAT, shape[:1])])
    return built, "flat (Squeeze): no axes and an input of dynamic shape"


def unsqueeze_axes_from_an_input(bad: bool):
    inputs = [value("x", FLOAT, [2])] + ([value("axes", INT64, [1])] if bad else [])
    node = helper.make_node("Unsqueeze", ["x", "axes"], ["y"], name="lift")
    initializers = [] if bad else [constant("axes", [0])]
    built = model([node], inputs, [value("y", FLOAT, [1, 2])], initializers)
    return built, "lift (Unsqueeze): axes 'axes' is computed in the graph"


def cumsum_axis_from_an_input(bad: bool):
    inputs = [value("x", FLOAT, [2, 3])] + ([value("axis", INT64, [])] if bad else [])
    node = helper.make_node("CumSum", ["x", "axis"], ["y"], name="running")
    initializers = [] if bad else [constant("axis", 1)]
    built = model([node], inputs, [value("y", FLOAT, [2, 3])], initializers)
    return built, "running (CumSum): axis 'axis' is not a build-time constant"


def dropout_in_training(bad: bool):
    node = helper.make_node("Dropout", ["x", "ratio", "training"], ["y"], name="drop")
    initializers = [constant("ratio", 0.1, np.float32), constant("training", bad, np.bool_)]
    built = model([node], [value("x", FLOAT, [2])], [value("y", FLOAT, [2])], initializers)
    return built, "drop (Dropout): training_mode must be an initializer that is false"


def layernorm_mean_used(bad: bool):
    outputs = [value("y", FLOAT, [2, 3])] + ([value("mean", FLOAT, [2, 1])] if bad else [])
    node = helper.make_node(
        "LayerNormalization", ["x", "scale"], ["y", "mean"], name="norm", axis=-1
    )
    initializers = [constant("scale", [1, 1, 1], np.float32)]
    built = model([node], [value("x", FLOAT, [2, 3])], outputs, initializers)
    return built, "norm (LayerNormalization): outputs ['mean'] are used"


def uint8_inside_the_network(bad: bool):
    """UINT8 is allowed as a network input or output only."""
    if bad:
        nodes = [
            helper.make_node("Cast", ["x"], ["bytes"], name="down", to=TensorProto.UINT8),
            helper.make_node("Cast", ["bytes"], ["y"], name="up", to=FLOAT),
        ]
        inputs = [value("x", FLOAT, [2])]
    else:
        nodes = [helper.make_node("Cast", ["x"], ["y"], name="up", to=FLOAT)]
        inputs = [value("x", TensorProto.UINT8, [2])]
    built = model(nodes, inputs, [value("y", FLOAT, [2])])
    return built, "down (Cast): 'bytes' is UINT8"


def a_branch_with_an_operator_tensorrt_lacks(bad: bool):
    """The checker looks inside If/Loop/Scan bodies too."""
    op = "DFT" if bad else "Relu"
    inner = helper.make_node(op, ["x"], ["z"], name="spectrum")
    shape = [1, 16, 2] if bad else [1, 16, 1]
    branch = helper.make_graph([inner], "branch", [], [value("z", FLOAT, shape)])
    zeros = numpy_helper.from_array(np.zeros(shape, np.float32))
    other = helper.make_graph(
        [helper.make_node("Constant", [], ["w"], value=zeros)],
        "other",
        [],
        [value("w", FLOAT, shape)],
    )
    node = helper.make_node(
        "If", ["flag"], ["y"], name="choose", then_branch=branch, else_branch=other
    )
    inputs = [value("flag", TensorProto.BOOL, []), value("x", FLOAT, [1, 16, 1])]
    built = model([node], inputs, [value("y", FLOAT, shape)], opset=20)
    return built, "choose/then_branch/spectrum (DFT)"


REFUSALS = [
    reduce_axes_from_an_input,
    an_operator_tensorrt_lacks,
    integer_matmul,
    matmul_in_int32,
    squeeze_without_axes,
    unsqueeze_axes_from_an_input,
    cumsum_axis_from_an_input,
    dropout_in_training,
    layernorm_mean_used,
    uint8_inside_the_network,
    a_branch_with_an_operator_tensorrt_lacks,
]


@pytest.mark.parametrize("case", REFUSALS, ids=lambda case: case.__name__)
def test_checker_refuses_what_tensorrt_documents_as_unsupported(case):
    refused, reason = case(bad=True)
    buildable, _ = case(bad=False)
    assert unsupported(buildable) == []
    problems = unsupported(refused)
    assert len(problems) == 1 and problems[0].startswith(reason), problems


@pytest.mark.parametrize("opset", [8, 25])
def test_checker_refuses_opsets_outside_9_to_24(opset):
    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    built = model([node], [value("x", FLOAT, [2])], [value("y", FLOAT, [2])], opset=opset)
    assert unsupported(built) == [f"model: opset {opset} is outside TensorRT 10's range 9..24"]
    inside = model([node], [value("x", FLOAT, [2])], [value("y", FLOAT, [2])], opset=24)
    assert unsupported(inside) == []


def test_float64_is_allowed_and_reported_as_cast_down_to_float32():
    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    double = [value("x", TensorProto.DOUBLE, [2])], [value("y", TensorProto.DOUBLE, [2])]
    report = check(model([node], *double))
    assert report.problems == [] and report.float64_nodes == ["relu (Relu)"]
