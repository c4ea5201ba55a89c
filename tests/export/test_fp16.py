"""The FP16 graphs: what stays in float32, and how close they stay to the reference.

onnxruntime's CPU provider runs them by casting around its float32 kernels, so here the
float16 weights and the float16 tensors between layers are what is tested; a GPU's own
float16 kernels are tested in test_gpu.py, on a machine that has one.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto

import runtime
from export.fp16 import FP16_FILES
from export.onnx_export import frontend_nodes
from export.synthetic import random_track
from tests.helpers import assert_close


def element_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    values = [*inferred.value_info, *inferred.input, *inferred.output]
    return {value.name: value.type.tensor_type.elem_type for value in values}


@pytest.mark.parametrize("family", ["small", "small_clap", "small_muscall"])
def test_manifest_records_fp16_graphs_with_float32_inputs_and_outputs(request, family):
    folder = request.getfixturevalue(f"{family}_fp16_dir")
    manifest = json.loads((folder / "manifest.json").read_text())
    for tower, name in FP16_FILES.items():
        assert manifest["fp16"][tower] == name
        fp32 = onnx.load(str(folder / manifest[tower]["file"])).graph
        fp16 = onnx.load(str(folder / name)).graph
        for values in ("input", "output"):
            dtypes = [
                [(v.name, v.type.tensor_type.elem_type) for v in getattr(graph, values)]
                for graph in (fp32, fp16)
            ]
            assert dtypes[0] == dtypes[1]


@pytest.mark.parametrize("family", ["small", "small_clap", "small_muscall"])
def test_frontend_softmax_and_layernorm_stay_float32_and_weights_become_float16(request, family):
    folder = request.getfixturevalue(f"{family}_fp16_dir")
    for tower in ("audio", "text"):
        fp32 = onnx.load(str(folder / f"{tower}.onnx")).graph
        frontend = set(frontend_nodes(fp32)) if tower == "audio" else set()
        model = onnx.load(str(folder / FP16_FILES[tower]))
        types = element_types(model)
        weights = {init.name: init.data_type for init in model.graph.initializer}
        weighted = 0
        for node in model.graph.node:
            out = types[node.output[0]]
            if node.name in frontend:  # float32 (CLAP's: float64), ids and masks
                assert out != TensorProto.FLOAT16, node.name
            if node.op_type in ("Softmax", "LayerNormalization"):
                assert out == TensorProto.FLOAT, node.name
            if node.op_type in ("Conv", "MatMul", "Gemm") and node.name not in frontend:
                inputs = [weights[name] for name in node.input if name in weights]
                assert set(inputs) <= {TensorProto.FLOAT16}, node.name
                weighted += bool(inputs)
        assert weighted >= 2, tower


@pytest.mark.parametrize("family", ["small", "small_clap", "small_muscall"])
def test_no_float16_round_trip_between_two_float32_nodes(request, family):
    """A float32 tensor cast to float16 and straight back only loses precision (it flushed
    the frontend's 1e-10 floor to zero before)."""
    folder = request.getfixturevalue(f"{family}_fp16_dir")
    for name in FP16_FILES.values():
        model = onnx.load(str(folder / name))
        types = element_types(model)
        producer = {out: node for node in model.graph.node for out in node.output}
        for node in model.graph.node:
            before = producer.get(node.input[0]) if node.op_type == "Cast" else None
            round_trip = (
                before is not None
                and before.op_type == "Cast"
                and before.attribute[0].i == TensorProto.FLOAT16
                and node.attribute[0].i == TensorProto.FLOAT
                and types.get(before.input[0]) == TensorProto.FLOAT
            )
            assert not round_trip, (before.name, node.name)


def test_digital_silence_stays_finite_in_fp16(small_fp16_dir):
    model = runtime.Embedder(small_fp16_dir, precision="fp16")
    rows = model.embed_audio([np.zeros(22050 * 12, np.float32)], sample_rate=22050)
    assert np.isfinite(rows).all()


@pytest.mark.slow
def test_full_size_fp16_stays_close_to_the_reference(demo_fp16_dir, demo_reference):
    """The issue's fp16 bar is cosine >= 0.999 to the reference (joint, audio and text)."""
    model = runtime.Embedder(demo_fp16_dir, precision="fp16", providers=["CPUExecutionProvider"])
    tracks = [random_track(21, 12.0), random_track(22, 31.0)]
    expected = np.stack([demo_reference.embed_track(t, 22050)[0] for t in tracks])
    assert_close(expected, model.embed_audio(tracks, sample_rate=22050), 0.999, 0.05)
    texts = ["a calm solo piano piece in D", "", "fast drums " * 60]
    reference = demo_reference.text_encode(texts)[0].numpy()
    assert_close(reference, model.embed_text(texts), 0.999, 0.05)


@pytest.mark.slow
def test_full_size_clap_fp16_stays_close_to_the_reference(demo_clap_fp16_dir, demo_clap_reference):
    cpu = ["CPUExecutionProvider"]
    model = runtime.Embedder(demo_clap_fp16_dir, precision="fp16", providers=cpu)
    rate = demo_clap_reference.sample_rate
    tracks = [random_track(23, 7.0, rate), random_track(24, 12.0, rate)]
    expected = np.stack([demo_clap_reference.embed_track(t, rate)[0] for t in tracks])
    assert_close(expected, model.embed_audio(tracks, sample_rate=rate), 0.999, 0.05)
    texts = ["a calm solo piano piece in D", "fast drums " * 30]
    reference = demo_clap_reference.text_encode(texts)[0].numpy()
    assert_close(reference, model.embed_text(texts), 0.999, 0.05)


@pytest.mark.slow
def test_full_size_muscall_fp16_stays_close_to_the_reference(
    demo_muscall_fp16_dir, demo_muscall_reference
):
    cpu = ["CPUExecutionProvider"]
    model = runtime.Embedder(demo_muscall_fp16_dir, precision="fp16", providers=cpu)
    tracks = [(random_track(25, 7.0, 16000), 16000), (random_track(26, 41.0, 44100), 44100)]
    expected = np.stack([demo_muscall_reference.embed_track(t, r)[0] for t, r in tracks])
    got = np.concatenate([model.embed_audio([t], sample_rate=r) for t, r in tracks])
    assert_close(expected, got, 0.999, 0.05)
    texts = ["a calm solo piano piece in D", "", "fast drums " * 30]
    reference = demo_muscall_reference.text_encode(texts)[0].numpy()
    assert_close(reference, model.embed_text(texts), 0.999, 0.05)
