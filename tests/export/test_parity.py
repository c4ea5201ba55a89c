"""ONNX Runtime against the PyTorch reference: both towers, both spaces, small and full size,
for every family (``FAMILY_CASES``); then TTMR++'s per-track floor and its log-mel."""

from __future__ import annotations

import librosa
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export.frontend import MelPower
from export.ttmrpp.audio_tower import AttentionPool, OneQueryPool
from tests.helpers import FAMILY_CASES, audio_feed, session, stem_conv, token_feed
from tests.helpers import ttmrpp_windows as track_of

pytestmark = pytest.mark.parity
TTMRPP = FAMILY_CASES["ttmrpp"]
SLOW = pytest.mark.slow
AUDIO_CASES = [
    *[("ttmrpp", "small", windows) for windows in (1, 3, 8)],
    *[pytest.param("ttmrpp", "demo", windows, marks=SLOW) for windows in (1, 3, 8)],
    ("clap", "small", 1),
    ("clap", "small", 3),
    pytest.param("clap", "demo", 3, marks=SLOW),
    ("muscall", "small", 1),
    ("muscall", "small", 3),
    pytest.param("muscall", "demo", 3, marks=SLOW),
]
TEXT_CASES = [
    ("ttmrpp", "small"),
    pytest.param("ttmrpp", "demo", marks=SLOW),
    ("clap", "small"),
    pytest.param("clap", "demo", marks=SLOW),
    ("muscall", "small"),
    pytest.param("muscall", "demo", marks=SLOW),
]


def track_floor(model_dir, windows: np.ndarray) -> np.float32:
    """One track's log-mel floor: the highest of the floor graph's answers for its windows."""
    return session(model_dir / "floor.onnx").run(None, {"waveform": windows})[0].max()


def run_audio(model_dir, windows: np.ndarray, floors: np.ndarray | None = None) -> list:
    """The audio graph on rows with their floors (default: all rows one track's windows)."""
    if floors is None:
        floors = np.full(len(windows), track_floor(model_dir, windows), np.float32)
    return session(model_dir / "audio.onnx").run(None, {"waveform": windows, "floor": floors})


@pytest.mark.parametrize(("family", "size", "windows"), AUDIO_CASES)
def test_audio_graph_matches_reference(request, family, size, windows):
    case = FAMILY_CASES[family]
    model_dir, reference = case.model(request, size)
    audio = case.windows(windows, seed=windows)
    joint, encoder = session(model_dir / "audio.onnx").run(None, audio_feed(model_dir, audio))
    ref_joint, ref_encoder = reference.audio_encode(torch.from_numpy(audio))
    case.assert_close(ref_joint, joint)
    case.assert_close(ref_encoder, encoder)


@pytest.mark.parametrize(("family", "size"), TEXT_CASES)
def test_text_graph_matches_reference_for_mixed_batch(request, family, size):
    case = FAMILY_CASES[family]
    model_dir, reference = case.model(request, size)
    texts = list(case.texts)
    tokens = reference.tokenize(texts)
    assert tokens["input_ids"].shape == (len(texts), case.max_length)
    assert tokens["attention_mask"][-1].all()  # the long text was truncated at max_length
    graph = session(model_dir / "text.onnx")
    joint, encoder = graph.run(None, token_feed(tokens, graph))
    ref_joint, ref_encoder = reference.text_encode(texts)
    case.assert_close(ref_joint, joint)
    case.assert_close(ref_encoder, encoder)


@pytest.mark.parametrize("family", FAMILY_CASES)
def test_text_graph_matches_reference_one_text_at_a_time(request, family):
    case = FAMILY_CASES[family]
    model_dir, reference = case.model(request, "small")
    text = session(model_dir / "text.onnx")
    for sentence in case.texts:
        joint, encoder = text.run(None, token_feed(reference.tokenize([sentence]), text))
        ref_joint, ref_encoder = reference.text_encode([sentence])
        case.assert_close(ref_joint, joint)
        case.assert_close(ref_encoder, encoder)


def test_track_embedding_ignores_other_tracks_in_the_batch(small_model_dir, small_reference):
    tracks = {
        "target": track_of(2, seed=1),
        "loud": track_of(3, seed=2, loudness=1.0),
        "quiet": track_of(1, seed=3, loudness=1e-4),
        "silent": np.zeros((2, 220500), np.float32),
    }
    alone = {name: run_audio(small_model_dir, w) for name, w in tracks.items()}
    windows = np.concatenate(list(tracks.values()))
    floors = np.concatenate(
        [np.full(len(w), track_floor(small_model_dir, w)) for w in tracks.values()]
    )
    joint, encoder = run_audio(small_model_dir, windows, floors.astype(np.float32))
    start = 0
    for name, audio in tracks.items():
        rows = slice(start, start + len(audio))
        start += len(audio)
        for got, solo in zip((joint, encoder), alone[name], strict=True):
            np.testing.assert_allclose(got[rows], solo, rtol=0, atol=1e-6 * np.abs(solo).max())
        ref_joint, _ = small_reference.audio_encode(torch.from_numpy(audio))
        TTMRPP.assert_close(ref_joint, joint[rows])
        assert np.isfinite(joint[rows]).all()


@pytest.mark.parametrize("positions", [1, 1 + 4 * 8])  # TTMR++'s one row; MusCALL's per token
def test_the_one_query_pool_equals_the_attention_pool_it_replaces(positions):
    """In float64, where only the order of the sums differs; random biases included (the
    key bias drops out of the softmax, the value bias passes through weights summing to 1)."""
    torch.manual_seed(positions)
    pool = AttentionPool(64, 8, 24, positions).double().eval()
    for parameter in pool.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    features = torch.randn(3, 64, 4, 8, dtype=torch.float64)
    expected = pool(features)
    got = OneQueryPool(pool)(features)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12 * expected.abs().max().item())


@pytest.mark.parametrize("family", ["ttmrpp", "muscall"])
def test_audio_graph_never_projects_every_tokens_key_and_value(request, family):
    """The exported pool is the one-query form: of the pool's three [C, C] projections only
    the query's is left (it projects one token); the key's and value's are per head."""
    model_dir, _ = FAMILY_CASES[family].model(request, "small")
    graph = onnx.load(str(model_dir / "audio.onnx")).graph
    shapes = {init.name: list(init.dims) for init in graph.initializer}
    pool = {name.rsplit(".", 1)[-1]: dims for name, dims in shapes.items() if "pool." in name}
    heads, head_dim, channels = pool["key"]
    assert heads * head_dim == channels and pool["value"] == [heads, channels, head_dim]
    assert list(shapes.values()).count([channels, channels]) == 1


@pytest.mark.parametrize("family", ["ttmrpp", "muscall"])
def test_audio_graph_multiplies_each_heads_pool_weight_once_per_call(request, family):
    """The per-head key and value weights multiply ``[heads, batch, …]`` activations: one
    GEMM per head over the whole batch, the weight read once per call, not once per window."""
    model_dir, _ = FAMILY_CASES[family].model(request, "small")
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(model_dir / "audio.onnx"))).graph
    shapes = {
        info.name: [d.dim_value or d.dim_param for d in info.type.tensor_type.shape.dim]
        for info in graph.value_info
    }
    weights = {init.name: list(init.dims) for init in graph.initializer if "pool." in init.name}
    per_head = {name: dims for name, dims in weights.items() if name.endswith((".key", ".value"))}
    products = [n for n in graph.node if n.op_type == "MatMul" and per_head.keys() & set(n.input)]
    assert len(products) == 2
    for node in products:
        activation, weight = node.input
        heads = per_head[weight][0]
        assert len(shapes[activation]) == 3 and shapes[activation][0] == heads
        assert shapes[activation][1] not in (heads, 1)  # the batch, whatever its size


def numpy_power(windows: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Independent float64 ``|STFT|²`` (periodic Hann, centred, reflect-padded), ``[B,
    bins, frames]`` with every frame the padding allows."""
    padded = np.pad(windows.astype(np.float64), ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=1)[:, ::hop]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    return (np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2).transpose(0, 2, 1)


def numpy_log_mel(windows: np.ndarray, sr: int = 22050, n_fft: int = 1024, hop: int = 220):
    """Independent float64 log-mel of one track's windows (numpy FFT, librosa's filters)."""
    power = numpy_power(windows, n_fft, hop)[:, :, :-1]
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
        floors = np.full(len(audio), track_floor(small_model_dir, audio), np.float32)
        log_mel = exposed.run([stem.input[0]], {"waveform": audio, "floor": floors})[0]
        expected = numpy_log_mel(audio)
        assert log_mel.shape == (len(audio), 1, 128, 1002)
        np.testing.assert_allclose(log_mel[:, 0], expected, rtol=0, atol=1e-4)


def test_floor_graph_gives_each_windows_log_mel_maximum_minus_8(small_model_dir):
    """Against the independent float64 log-mel: loud, quiet and silent windows."""
    windows = np.concatenate(
        [track_of(1, seed=7), track_of(1, seed=8, loudness=1e-3), np.zeros((1, 220500))]
    ).astype(np.float32)
    floors = session(small_model_dir / "floor.onnx").run(None, {"waveform": windows})[0]
    expected = [numpy_log_mel(window[None]).max() * 4 - 4 - 8 for window in windows]
    np.testing.assert_allclose(floors, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize(("top_bin", "k3_rows"), [(40, 1), (511, 4), (512, 5)])
def test_mel_power_computes_only_the_dft_rows_its_filters_weigh(top_bin, k3_rows):
    """Bins above the highest one a filter weighs are never computed (1024 points: 128 bins
    per last-stage row), and the mel power still equals float64 numpy's."""
    rng = np.random.default_rng(3)
    filters = rng.random((16, 513)).astype(np.float32)
    filters[:, top_bin + 1 :] = 0.0
    mel = MelPower(1024, 220, 20, filters, dtype=torch.float64)
    assert mel.kept == k3_rows and mel.stage3.shape[0] == 2 * k3_rows
    waveform = rng.standard_normal((2, 220 * 19)) * 0.3
    got = mel(torch.from_numpy(waveform)).numpy()
    expected = filters.astype(np.float64) @ numpy_power(waveform, 1024, 220)[:, :, :20]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-8)
