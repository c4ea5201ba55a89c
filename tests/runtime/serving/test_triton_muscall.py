"""Triton serving of a MusCALL model folder: export/to_triton.py's repository for the small
MusCALL model, served by scripts/serve.sh (conftest.py's ``server`` fixture), answers
what the in-process runtime does, over HTTP and gRPC, alone and under 16 concurrent
clients."""

from __future__ import annotations

import numpy as np
import pytest

import runtime
from export.quantize import cosines
from export.synthetic import random_track
from export.to_triton import main
from runtime.serving.triton import TritonEmbedder
from tests.triton_server import concurrent_solo_errors

# (seconds, rate, gain): one zero-padded window, two whole windows past full scale, and a
# quiet resampled track, at three rates.
TRACKS = [(3.0, 16000, 1.0), (45.0, 44100, 2.0), (21.0, 22050, 1e-3)]
TEXTS = ["", "a calm piano", "Café: naïve\tjazz ♪", "fast drums " * 40]


@pytest.fixture(scope="module")
def repository(small_muscall_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("triton_muscall_repo")
    args = ["--model-dir", str(small_muscall_model_dir), "--repository", str(folder)]
    assert main([*args, "--backend", "python"]) == 0
    return folder


@pytest.fixture(scope="module")
def tracks() -> list[tuple[np.ndarray, int]]:
    return [(gain * random_track(s, sec, rate), rate) for s, (sec, rate, gain) in enumerate(TRACKS)]


def test_server_embeddings_equal_the_runtime(server, small_muscall_model_dir, tracks):
    local = runtime.Embedder(small_muscall_model_dir)
    for protocol in ("http", "grpc"):
        with TritonEmbedder(server.url(protocol), protocol) as remote:
            for space in ("joint", "encoder"):
                for track, rate in tracks:
                    served = remote.embed_audio([track], sample_rate=rate, space=space)
                    expected = local.embed_audio([track], sample_rate=rate, space=space)
                    assert cosines(served, expected).min() >= 0.999999
                    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-5)
                served = remote.embed_text(TEXTS, space=space)
                expected = local.embed_text(TEXTS, space=space)
                assert cosines(served, expected).min() >= 0.999999


def test_concurrent_clients_get_their_solo_results(server, tracks):
    """16 clients, half HTTP and half gRPC, send tracks and sentences at once; each answer
    equals the one the same request got alone, and the server did batch them."""
    jobs = [(track, {"sample_rate": rate}) for track, rate in tracks]
    audio_errors, text_cosines = concurrent_solo_errors(server, jobs, TEXTS, 3, 1)
    assert max(audio_errors) <= 1e-6
    assert min(text_cosines) >= 0.99999
