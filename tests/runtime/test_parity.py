"""The runtime against the PyTorch reference for whole tracks and sentences: every family
(``FAMILY_CASES``), then what is particular to TTMR++ (its decoding, its per-track floor)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

import runtime
from export.synthetic import random_track
from export.ttmrpp.reference import load_track
from tests.helpers import FAMILY_CASES, assert_close

pytestmark = pytest.mark.parity
# (family, seconds, sample rate, gain): short (padded), one window, several (remainder
# dropped), past full scale, resampled.
ARRAY_CASES = [
    *[("ttmrpp", seconds, 22050, 1.0) for seconds in (3.0, 10.0, 25.0, 31.0)],
    ("clap", 3.0, 48000, 1.0),
    ("clap", 10.0, 48000, 0.01),
    ("clap", 25.0, 48000, 3.0),
    ("clap", 12.0, 44100, 0.3),
    ("muscall", 3.0, 16000, 1.0),
    ("muscall", 45.0, 44100, 2.0),
]
FULL_SIZE = [
    pytest.param("ttmrpp", marks=pytest.mark.slow),
    pytest.param("clap", marks=pytest.mark.slow),
    pytest.param("muscall", marks=pytest.mark.slow),
]


@pytest.fixture(scope="module")
def embedders(request):
    """The small model of a family in an Embedder (batches of 4), made once per module."""
    made = {}

    def of(family: str) -> runtime.Embedder:
        if family not in made:
            model_dir, _ = FAMILY_CASES[family].model(request, "small")
            made[family] = runtime.Embedder(model_dir, batch_size=4)
        return made[family]

    return of


@pytest.fixture(scope="module")
def embedder(embedders):
    return embedders("ttmrpp")


def stereo(seed: int, seconds: float, rate: int) -> np.ndarray:
    return np.stack([random_track(seed, seconds, rate), random_track(seed + 50, seconds, rate)], 1)


@pytest.mark.parametrize(("family", "seconds", "rate", "gain"), ARRAY_CASES)
@pytest.mark.parametrize("space", ["joint", "encoder"])
def test_arrays_match_reference(request, embedders, family, seconds, rate, gain, space):
    """Mono and stereo arrays at the model's rate and others, quiet to past full scale."""
    case = FAMILY_CASES[family]
    _, reference = case.model(request, "small")
    mono = gain * random_track(1, seconds, rate)
    tracks = [mono, np.stack([mono, gain * random_track(2, seconds, rate)], axis=1)]
    got = embedders(family).embed_audio(tracks, sample_rate=rate, space=space)
    expected = np.stack([reference.embed_track(t, rate)[space == "encoder"] for t in tracks])
    case.assert_close(expected, got)


@pytest.mark.parametrize("family", FAMILY_CASES)
@pytest.mark.parametrize("rate", [16000, 44100, 48000])
def test_resampled_arrays_match_reference(request, embedders, family, rate):
    case = FAMILY_CASES[family]
    _, reference = case.model(request, "small")
    tracks = [random_track(3, 12.0, rate), stereo(4, 21.0, rate)]
    got = embedders(family).embed_audio(tracks, sample_rate=rate)
    expected = np.stack([reference.embed_track(t, rate)[0] for t in tracks])
    case.assert_close(expected, got)  # the resampled windows are bit-identical


@pytest.mark.parametrize("family", FAMILY_CASES)
@pytest.mark.parametrize("space", ["joint", "encoder"])
def test_texts_match_reference(request, embedders, family, space):
    case = FAMILY_CASES[family]
    _, reference = case.model(request, "small")
    got = embedders(family).embed_text(list(case.texts), space=space)
    expected = reference.text_encode(list(case.texts))[space == "encoder"].numpy()
    case.assert_close(expected, got)


@pytest.mark.parametrize("family", FAMILY_CASES)
def test_tokenizer_ids_equal_reference_ids(request, embedders, family):
    case = FAMILY_CASES[family]
    _, reference = case.model(request, "small")
    for text in case.texts:  # the tokens under the mask (CLAP's reference pads to 77 more)
        ((_, feed),) = embedders(family)._text_batcher.batches([text], 1)
        tokens = reference.tokenize([text])
        expected = tokens["input_ids"][0][tokens["attention_mask"][0] == 1].tolist()
        assert feed["input_ids"][0][feed["attention_mask"][0] == 1].tolist() == expected


@pytest.mark.parametrize("family", FULL_SIZE)
def test_full_size_model_matches_reference(request, family):
    case = FAMILY_CASES[family]
    model_dir, reference = case.model(request, "demo")
    model = runtime.Embedder(model_dir)
    tracks = [0.3 * random_track(13, 12.0, 44100), stereo(14, 21.0, 44100)]
    expected = np.stack([reference.embed_track(t, 44100)[0] for t in tracks])
    case.assert_close(expected, model.embed_audio(tracks, sample_rate=44100))
    texts = ["a calm solo piano piece in D", "", "fast drums " * 60]
    case.assert_close(reference.text_encode(texts)[0], model.embed_text(texts))


@pytest.mark.parametrize(
    ("name", "audio", "rate"),
    [
        ("mono.wav", random_track(5, 14.0), 22050),
        ("stereo.flac", stereo(6, 23.0, 44100), 44100),
        ("short.ogg", random_track(7, 4.0, 32000), 32000),
        ("stereo.wav", stereo(16, 31.0, 22050), 22050),
        ("mono.mp3", random_track(17, 11.0, 44100), 44100),
    ],
)
def test_files_match_reference_decoding(embedder, small_reference, tmp_path, name, audio, rate):
    path = tmp_path / name
    sf.write(path, audio, rate)
    got = embedder.embed_audio([path])
    windows = torch.from_numpy(load_track(path, small_reference.hp))
    expected = small_reference.audio_encode(windows)[0].mean(0).numpy()[None]
    assert_close(expected, got, 0.999999, 1e-5)


def test_integer_pcm_equals_float_pcm(embedder):
    pcm = (random_track(8, 12.0) * 30000).astype(np.int16)
    as_int = embedder.embed_audio([pcm], sample_rate=22050)
    as_float = embedder.embed_audio([pcm.astype(np.float32) / 32768], sample_rate=22050)
    np.testing.assert_allclose(as_int, as_float, rtol=0, atol=1e-6)


def test_track_embedding_does_not_depend_on_batch_mates(small_model_dir):
    target = random_track(9, 25.0)
    others = [random_track(10, 35.0), 1e-4 * random_track(11, 8.0), np.zeros(50000, np.float32)]
    alone = runtime.Embedder(small_model_dir, batch_size=1).embed_audio([target], sample_rate=22050)
    for batch_size in (1, 3, 4, 16):
        model = runtime.Embedder(small_model_dir, batch_size=batch_size)
        mixed = model.embed_audio([others[0], target, *others[1:]], sample_rate=22050)
        np.testing.assert_allclose(mixed[1], alone[0], rtol=0, atol=1e-6 * np.abs(alone).max())


def test_digital_silence_gives_a_finite_embedding(embedder):
    rows = embedder.embed_audio([np.zeros(22050 * 12, np.float32)], sample_rate=22050)
    assert np.isfinite(rows).all() and np.abs(rows).max() > 0


def test_normalize_gives_unit_rows(embedder):
    rows = embedder.embed_audio([random_track(12, 5.0)], sample_rate=22050, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-6)
    texts = embedder.embed_text(["a", "b c"], normalize=True)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-6)


def test_module_level_functions_use_the_environment(small_model_dir, monkeypatch):
    monkeypatch.setenv("TTMR_MODEL_DIR", str(small_model_dir))
    direct = runtime.Embedder(small_model_dir).embed_text(["piano"])
    np.testing.assert_array_equal(runtime.embed_text(["piano"]), direct)
    audio = [random_track(15, 3.0)]
    np.testing.assert_array_equal(
        runtime.embed_audio(audio, sample_rate=22050),
        runtime.Embedder(small_model_dir).embed_audio(audio, sample_rate=22050),
    )
    assert runtime.Embedder(small_model_dir).providers == ["CPUExecutionProvider"]
