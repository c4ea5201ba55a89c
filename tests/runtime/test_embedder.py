"""The Embedder's calling conventions: both spaces from one pass, keyword-only options, and
what the ``runtime`` package exports."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest

import runtime
from export.synthetic import random_track
from runtime.engines.onnxruntime import OnnxRuntimeSession

TEXTS = ["a calm solo piano piece", "drums", "loud distorted guitars over a slow beat"]


@pytest.fixture(scope="module")
def embedder(small_model_dir):
    return runtime.Embedder(small_model_dir, batch_size=2)


def graph_calls(monkeypatch) -> list[tuple[str, tuple[str, ...]]]:
    """Every onnxruntime call from now on, as (graph file, outputs asked for)."""
    calls: list[tuple[str, tuple[str, ...]]] = []
    real_run = OnnxRuntimeSession.run

    def run(self, names, feed):
        calls.append((self.path.name, tuple(names)))
        return real_run(self, names, feed)

    monkeypatch.setattr(OnnxRuntimeSession, "run", run)
    return calls


def test_both_spaces_come_from_one_pass_bit_for_bit_as_each_alone(embedder, monkeypatch):
    tracks = [random_track(seed, seconds, 22050) for seed, seconds in ((1, 25.0), (2, 3.0))]
    alone = {
        space: embedder.embed_audio(tracks, sample_rate=22050, space=space, normalize=True)
        for space in ("joint", "encoder")
    }
    texts = {space: embedder.embed_text(TEXTS, space=space) for space in ("joint", "encoder")}
    calls = graph_calls(monkeypatch)
    both = embedder.embed_audio(
        tracks, sample_rate=22050, space=("encoder", "joint"), normalize=True
    )
    audio_calls = [names for graph, names in calls if graph == "audio.onnx"]
    assert audio_calls == [("encoder", "joint")] * 2  # 3 windows in calls of 2, once
    assert sum(graph == "floor.onnx" for graph, _ in calls) == 2
    calls.clear()
    both_texts = embedder.embed_text(TEXTS, space=("joint", "encoder"))
    assert calls == [("text.onnx", ("joint", "encoder"))] * 2
    assert list(both) == ["encoder", "joint"] and list(both_texts) == ["joint", "encoder"]
    for space in ("joint", "encoder"):
        np.testing.assert_array_equal(both[space], alone[space])
        np.testing.assert_array_equal(both_texts[space], texts[space])


def test_one_space_by_name_is_an_array_and_a_bad_or_empty_space_is_refused(embedder):
    assert isinstance(embedder.embed_text(["piano"], space="encoder"), np.ndarray)
    (only,) = embedder.embed_text(["piano"], space=["joint"]).values()
    assert only.shape == (1, 16)
    with pytest.raises(runtime.InputError, match=r"space must be one of .*got 'audio'"):
        embedder.embed_text(["piano"], space=("joint", "audio"))
    with pytest.raises(runtime.InputError, match=r"name at least one of"):
        embedder.embed_audio([np.zeros(22050, np.float32)], sample_rate=22050, space=())


def test_options_after_the_model_folder_are_keyword_only(small_model_dir):
    with pytest.raises(TypeError):
        runtime.Embedder(small_model_dir, ["CPUExecutionProvider"])
    model = runtime.Embedder(small_model_dir)
    with pytest.raises(TypeError):
        model.embed_text(["piano"], "encoder")
    assert not hasattr(model, "window_samples")


def test_the_package_exports_its_version_and_api_not_the_command_lines_helpers():
    assert runtime.__version__ == importlib.metadata.version("ttmr-runtime")
    assert "model_dir_from" not in runtime.__all__
    with pytest.raises(AttributeError):
        runtime.model_dir_from  # noqa: B018
    assert all(hasattr(runtime, name) for name in runtime.__all__ if name != "TritonEmbedder")
    for name in ("TTMR++", "LAION-CLAP", "MusCALL"):
        assert name in runtime.__doc__
