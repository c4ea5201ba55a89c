"""ONNX Runtime against the PyTorch reference: both towers, both spaces, small and full size."""

from __future__ import annotations

import librosa
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export.onnx_export import TEXT_INPUTS
from tests.test_runtime_parity import assert_close as assert_rows_close

COSINE_MIN = 0.999999
REL_ERROR_MAX = 1e-5  # max |ort - ref| / max |ref|

TEXTS = [
    "",
    "a calm solo piano piece in D",
    "rock",
    "Ünïcödé: 日本の音楽、ピアノとヴァイオリン — café jazz ♪ 🎷",
    "distorted guitars and fast drums " * 40,  # far past 128 tokens: truncated
]


def token_feed(tokens: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The text graph's inputs from a reference ``tokenize()`` result."""
    return {name: tokens[name].numpy() for name in TEXT_INPUTS}


def session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def assert_close(reference: torch.Tensor, got: np.ndarray) -> None:
    assert_rows_close(reference.numpy(), got, COSINE_MIN, REL_ERROR_MAX)


def stem_conv(graph: onnx.GraphProto) -> onnx.NodeProto:
    """The ResNet's first convolution in a TTMR++ audio graph, found by its weights' shape
    (one input channel, 3×3) rather than by position: its input is the log-mel."""
    weights = {init.name: init for init in graph.initializer}
    return next(
        node
        for node in graph.node
        if node.op_type == "Conv"
        and node.input[1] in weights
        and list(weights[node.input[1]].dims)[1:] == [1, 3, 3]
    )


def track_of(windows: int, seed: int, loudness: float = 0.3) -> np.ndarray:
    """Noise plus a tone, already in the int16 grid that preprocessing produces."""
    rng = np.random.default_rng(seed)
    t = np.arange(windows * 220500) / 22050
    audio = loudness * (
        np.sin(2 * np.pi * (220 + 40 * seed) * t) + 0.3 * rng.standard_normal(len(t))
    )
    audio = np.round(np.clip(audio, -1, 1) * 32767) / 32767
    return audio.astype(np.float32).reshape(windows, 220500)


def run_audio(model_dir, windows: np.ndarray, track: np.ndarray) -> list[np.ndarray]:
    return session(model_dir / "audio.onnx").run(None, {"waveform": windows, "track": track})


@pytest.mark.parametrize("windows", [1, 3, 8])
@pytest.mark.parametrize("size", ["small", "demo"])
def test_audio_graph_matches_reference(request, size, windows):
    model_dir = request.getfixturevalue(f"{size}_model_dir")
    reference = request.getfixturevalue(f"{size}_reference")
    audio = track_of(windows, seed=windows)
    joint, encoder = run_audio(model_dir, audio, np.zeros(windows, np.int64))
    ref_joint, ref_encoder = reference.audio_encode(torch.from_numpy(audio))
    assert_close(ref_joint, joint)
    assert_close(ref_encoder, encoder)


@pytest.mark.parametrize("size", ["small", "demo"])
def test_text_graph_matches_reference_for_mixed_batch(request, size):
    model_dir = request.getfixturevalue(f"{size}_model_dir")
    reference = request.getfixturevalue(f"{size}_reference")
    tokens = reference.tokenize(TEXTS)
    assert tokens["input_ids"].shape[1] == reference.hp.max_length  # truncation happened
    feed = token_feed(tokens)
    joint, encoder = session(model_dir / "text.onnx").run(None, feed)
    ref_joint, ref_encoder = reference.text_encode(TEXTS)
    assert_close(ref_joint, joint)
    assert_close(ref_encoder, encoder)


def test_text_graph_matches_reference_one_text_at_a_time(small_model_dir, small_reference):
    text = session(small_model_dir / "text.onnx")
    for sentence in TEXTS:
        tokens = small_reference.tokenize([sentence])
        feed = token_feed(tokens)
        joint, encoder = text.run(None, feed)
        ref_joint, ref_encoder = small_reference.text_encode([sentence])
        assert_close(ref_joint, joint)
        assert_close(ref_encoder, encoder)


def test_track_embedding_ignores_other_tracks_in_the_batch(small_model_dir, small_reference):
    tracks = {
        "target": track_of(2, seed=1),
        "loud": track_of(3, seed=2, loudness=1.0),
        "quiet": track_of(1, seed=3, loudness=1e-4),
        "silent": np.zeros((2, 220500), np.float32),
    }
    alone = {
        name: run_audio(small_model_dir, w, np.zeros(len(w), np.int64))
        for name, w in tracks.items()
    }
    windows = np.concatenate(list(tracks.values()))
    ids = np.concatenate([np.full(len(w), i, np.int64) for i, w in enumerate(tracks.values())])
    joint, encoder = run_audio(small_model_dir, windows, ids)
    start = 0
    for name, audio in tracks.items():
        rows = slice(start, start + len(audio))
        start += len(audio)
        for got, solo in zip((joint, encoder), alone[name], strict=True):
            np.testing.assert_allclose(got[rows], solo, rtol=0, atol=1e-6 * np.abs(solo).max())
        ref_joint, _ = small_reference.audio_encode(torch.from_numpy(audio))
        assert_close(ref_joint, joint[rows])
        assert np.isfinite(joint[rows]).all()


def numpy_log_mel(windows: np.ndarray, sr: int = 22050, n_fft: int = 1024, hop: int = 220):
    """Independent float64 log-mel of one track's windows (numpy FFT, librosa's filters)."""
    padded = np.pad(windows.astype(np.float64), ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=1)[:, ::hop]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2  # [B, frames, bins]
    power = power[:, :-1].transpose(0, 2, 1)
    filters = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=128, dtype=np.float64)
    log_mel = np.log10(np.maximum(filters @ power, 1e-10))
    return (np.maximum(log_mel, log_mel.max() - 8.0) + 4.0) / 4.0


def test_in_graph_log_mel_equals_numpy_and_librosa(small_model_dir):
    """Expose the tensor the ResNet stem reads and compare it to an independent computation."""
    graph = onnx.load(str(small_model_dir / "audio.onnx"))
    stem = stem_conv(graph.graph)
    graph.graph.output.append(onnx.ValueInfoProto(name=stem.input[0]))
    exposed = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    for audio in (track_of(2, seed=5), track_of(1, seed=6, loudness=1e-3)):
        ids = np.zeros(len(audio), np.int64)
        log_mel = exposed.run([stem.input[0]], {"waveform": audio, "track": ids})[0]
        expected = numpy_log_mel(audio)
        assert log_mel.shape == (len(audio), 1, 128, 1002)
        np.testing.assert_allclose(log_mel[:, 0], expected, rtol=0, atol=1e-4)
