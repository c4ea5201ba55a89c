"""Triton on a CPU server with OpenVINO running the towers inside the Python backend
(``export/to_triton.py --backend python --engine openvino``): the served embeddings are the
in-process OpenVINO runtime's, and the configs say which engine and precision each tower
runs (the floor graph float32 always)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import runtime
from export.quantize import cosines
from export.synthetic import random_track
from export.to_triton import FLOOR_TOWER, main
from runtime.serving.triton import TritonEmbedder
from tests.triton_server import parse_config

pytest.importorskip("openvino", reason="scripts/setup.sh installs the openvino extra")

TEXTS = ["", "a calm solo piano piece in D", "Café: naïve\tjazz ♪", "fast drums " * 60]


@pytest.fixture(scope="module")
def repository(small_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("triton_openvino_repo")
    args = ["--model-dir", str(small_model_dir), "--repository", str(folder)]
    assert main([*args, "--backend", "python", "--engine", "openvino"]) == 0
    return folder


def test_configs_name_the_engine_and_keep_the_floor_in_fp32(small_model_dir, tmp_path):
    args = ["--model-dir", str(small_model_dir), "--repository", str(tmp_path)]
    assert main([*args, "--backend", "python", "--engine", "openvino", "--precision", "bf16"]) == 0
    for name, precision in (("audio_tower", "bf16"), ("text_tower", "bf16"), (FLOOR_TOWER, "fp32")):
        options = parse_config(tmp_path / name / "config.pbtxt").parameters
        assert json.loads(options["engine"].string_value) == "openvino"
        assert json.loads(options["precision"].string_value) == precision


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--backend", "onnxruntime", "--engine", "openvino"], "add --backend python"),
        (["--backend", "python", "--precision", "bf16"], "needs --engine openvino"),
    ],
)
def test_engine_options_that_cannot_work_are_refused(
    small_model_dir, tmp_path, capsys, extra, message
):
    args = ["--model-dir", str(small_model_dir), "--repository", str(tmp_path / "r")]
    with pytest.raises(SystemExit) as caught:
        main([*args, *extra])
    assert caught.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_served_embeddings_equal_the_openvino_runtime(server, small_model_dir):
    local = runtime.Embedder(small_model_dir, backend="openvino")
    tracks = [random_track(1, 4.0, 22050), 0.3 * random_track(2, 45.0, 44100)]
    for protocol in ("http", "grpc"):
        with TritonEmbedder(server.url(protocol), protocol) as remote:
            for track, rate in zip(tracks, (22050, 44100), strict=True):
                served = remote.embed_audio([track], sample_rate=rate)
                expected = local.embed_audio([track], sample_rate=rate)
                assert cosines(served, expected).min() >= 0.999999
                np.testing.assert_allclose(served, expected, rtol=0, atol=1e-5)
            served = remote.embed_text(TEXTS)
            assert cosines(served, local.embed_text(TEXTS)).min() >= 0.999999
