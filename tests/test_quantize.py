"""The INT8 profile: what quantize.py writes, what it leaves in float, and how close it stays."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from export.graphs import frontend_nodes
from export.hparams import HParams
from export.quantize import (
    AUDIO_INT8,
    FLOAT_CONVS,
    TEXT_INT8,
    quantize_model,
)
from export.reference import track_windows
from export.synthetic import random_track
from tests.test_export_parity import stem_conv, token_feed


def quantized_copy(model_dir, folder, windows: int):
    shutil.copytree(model_dir, folder)
    quantize_model(folder, calibration_windows=windows)
    return folder


@pytest.fixture(scope="session")
def small_int8_dir(small_model_dir, tmp_path_factory):
    return quantized_copy(small_model_dir, tmp_path_factory.mktemp("small_int8") / "model", 8)


@pytest.fixture(scope="session")
def demo_int8_dir(demo_model_dir, tmp_path_factory):
    return quantized_copy(demo_model_dir, tmp_path_factory.mktemp("demo_int8") / "model", 16)


def run(path, feed) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)[0]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_manifest_records_the_int8_graphs(small_int8_dir):
    manifest = json.loads((small_int8_dir / "manifest.json").read_text())
    assert manifest["int8"]["audio"] == AUDIO_INT8 and manifest["int8"]["text"] == TEXT_INT8
    assert manifest["int8"]["calibration"]["windows"] == 8
    assert (small_int8_dir / AUDIO_INT8).is_file() and (small_int8_dir / TEXT_INT8).is_file()


def test_frontend_and_early_convs_stay_in_float_and_other_convs_are_int8(
    small_model_dir, small_int8_dir
):
    fp32 = onnx.load(str(small_model_dir / "audio.onnx")).graph
    frontend = set(frontend_nodes(fp32))
    assert {n.op_type for n in fp32.node if n.name in frontend} >= {"Gather", "MatMul", "Log"}
    graph = onnx.load(str(small_int8_dir / AUDIO_INT8)).graph
    producers = {out: node for node in graph.node for out in node.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(convs) == 55  # 3 stem + 16 blocks × 3 + 4 downsample
    in_float = [conv.name for conv in convs if conv.input[1] not in producers]
    # the stem, layer1 (3 blocks × 3 + 1 downsample) and layer2's first block (3 + 1)
    assert len(in_float) == 3 + 10 + 4
    assert stem_conv(graph).name in in_float
    for conv in convs:
        if conv.name in in_float:
            assert conv.input[1].startswith(FLOAT_CONVS), conv.name
        else:
            assert producers[conv.input[1]].op_type == "DequantizeLinear", conv.name
    kept = [n for n in graph.node if n.name in frontend]
    assert len(kept) == len(frontend)  # every frontend node is still there, unquantised
    for node in kept:
        fed_by = {producers[i].op_type for i in node.input if i in producers}
        assert "DequantizeLinear" not in fed_by, node.name


def test_attention_pool_projections_are_int8_and_its_scores_stay_float(
    small_model_dir, small_int8_dir
):
    fp32 = onnx.load(str(small_model_dir / "audio.onnx")).graph
    frontend = set(frontend_nodes(fp32))
    weights = {init.name for init in fp32.initializer}
    pool = [n for n in fp32.node if n.op_type == "MatMul" and n.name not in frontend]
    projections = {n.name for n in pool if any(name in weights for name in n.input)}
    scores = {n.name for n in pool} - projections
    assert len(projections) == 3 and len(scores) == 2  # q, k, v; q·kᵀ and softmax·v
    graph = onnx.load(str(small_int8_dir / AUDIO_INT8)).graph
    producers = {out: node for node in graph.node for out in node.output}
    checked = [node for node in graph.node if node.name in projections | scores]
    assert {node.name for node in checked} == projections | scores
    for node in checked:
        fed_by = {producers[i].op_type for i in node.input if i in producers}
        assert ("DequantizeLinear" in fed_by) == (node.name in projections), node.name


@pytest.mark.parametrize(("size", "cosine_min"), [("small", 0.98), ("demo", 0.99)])
def test_int8_audio_stays_close_to_fp32(request, size, cosine_min):
    """The issue's bar (cosine >= 0.99 on joint embeddings) holds at full size; the
    8-channel-wide small model has too few channels per layer to average INT8 noise away."""
    folder = request.getfixturevalue(f"{size}_int8_dir")
    hp = HParams.from_dict(json.loads((folder / "manifest.json").read_text())["hparams"])
    for seed in (101, 102, 103):
        windows = track_windows(random_track(seed, 25.0), 22050, hp)
        feed = {"waveform": windows, "track": np.zeros(len(windows), np.int64)}
        fp32 = run(folder / "audio.onnx", feed).mean(0)
        int8 = run(folder / AUDIO_INT8, feed).mean(0)
        assert cosine(fp32, int8) >= cosine_min


def test_int8_text_stays_close_to_fp32(small_int8_dir, small_reference):
    tokens = small_reference.tokenize(["a calm piano piece", "fast drums and distorted guitar", ""])
    feed = token_feed(tokens)
    fp32 = run(small_int8_dir / "text.onnx", feed)
    int8 = run(small_int8_dir / TEXT_INT8, feed)
    assert cosine(fp32, int8).min() >= 0.99
    graph = onnx.load(str(small_int8_dir / TEXT_INT8)).graph
    assert any(node.op_type in {"MatMulInteger", "DynamicQuantizeLinear"} for node in graph.node)


def test_calibration_folder_without_audio_is_an_error(small_model_dir, tmp_path):
    with pytest.raises(ValueError, match="no audio files to calibrate on"):
        quantize_model(small_model_dir, calibration_dir=tmp_path)
