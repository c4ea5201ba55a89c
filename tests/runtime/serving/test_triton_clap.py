"""Triton serving of a CLAP model folder: export/to_triton.py's repository for the small
CLAP model, served by scripts/serve.sh (the same server fixture as TTMR++'s), answers what
the in-process runtime does."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import runtime
from export.quantize import cosines
from export.synthetic import random_track
from export.to_triton import AUDIO_TOWER, FLOOR_TOWER, fill_repository, main
from runtime.serving.triton import AUDIO_MODEL, TritonEmbedder
from tests.triton_server import check_tensors, parse_config

RATE = 48000


@pytest.fixture(scope="module")
def repository(small_clap_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("triton_clap_repo")
    args = ["--model-dir", str(small_clap_model_dir), "--repository", str(folder)]
    assert main([*args, "--backend", "python"]) == 0
    return folder


@pytest.mark.parametrize("folder", ["small_clap_model_dir", "small_muscall_model_dir"])
def test_audio_tower_takes_only_the_waveform_and_there_is_no_floor_model(folder, tmp_path, request):
    """CLAP's and MusCALL's windows need no track-level floor (TTMR++'s do)."""
    names = fill_repository(request.getfixturevalue(folder), tmp_path, "onnxruntime")
    assert FLOOR_TOWER not in names and not (tmp_path / FLOOR_TOWER).exists()
    config = parse_config(tmp_path / AUDIO_TOWER / "config.pbtxt")
    graph = onnx.load(str(tmp_path / AUDIO_TOWER / "1" / "model.onnx")).graph
    assert [i.name for i in config.input] == ["waveform"]
    check_tensors(config.input, graph.input, batched=True)
    check_tensors(config.output, graph.output, batched=True)
    audio = parse_config(tmp_path / AUDIO_MODEL / "config.pbtxt")
    assert "floor" not in audio.parameters


def test_server_embeddings_equal_the_runtime(server, small_clap_model_dir):
    local = runtime.Embedder(small_clap_model_dir)
    tracks = [0.3 * random_track(1, 3.0, RATE), random_track(2, 23.0, 44100)]
    texts = ["", "a calm piano", "fast drums " * 40]
    for protocol in ("http", "grpc"):
        with TritonEmbedder(server.url(protocol), protocol) as remote:
            for space in ("joint", "encoder"):
                served = remote.embed_audio(tracks[:1], sample_rate=RATE, space=space)
                served = np.concatenate(
                    [served, remote.embed_audio(tracks[1:], sample_rate=44100, space=space)]
                )
                expected = np.concatenate(
                    [
                        local.embed_audio(tracks[:1], sample_rate=RATE, space=space),
                        local.embed_audio(tracks[1:], sample_rate=44100, space=space),
                    ]
                )
                assert cosines(served, expected).min() >= 0.99999
                np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-5)
                served = remote.embed_text(texts, space=space)
                assert cosines(served, local.embed_text(texts, space=space)).min() >= 0.99999
