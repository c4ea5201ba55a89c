"""runtime.Embedder and the CLI with CLAP model folders exported from Hugging Face folders,
against the reference (ClapModel on transformers' preprocessing: 48 kHz, the samples as they
are, repeat-padded short tracks, the mean over whole 10-s windows for long ones) and against
ClapProcessor itself."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import ClapModel, ClapProcessor

import runtime
from export.synthetic import random_track
from runtime.catalog.npz import NpzCatalog
from runtime.cli.main import main
from tests.helpers import FAMILY_CASES
from tests.helpers import assert_close as assert_rows_close

RATE, WINDOW = 48000, 480000


@pytest.fixture(scope="module")
def embedder(small_clap_model_dir):
    return runtime.Embedder(small_clap_model_dir, batch_size=4)


@pytest.fixture(scope="module")
def transformers_clap(small_clap_export) -> tuple[ClapProcessor, ClapModel]:
    """The small model's Hugging Face folder as transformers' own classes read it."""
    hf_folder = small_clap_export[1]
    processor = ClapProcessor.from_pretrained(hf_folder, local_files_only=True)
    return processor, ClapModel.from_pretrained(hf_folder, local_files_only=True).eval()


def transformers_embedding(transformers_clap, track: np.ndarray, space: str) -> np.ndarray:
    """``ClapProcessor``'s features of a 48-kHz track (a short track whole, repeat-padded by
    the processor; a long one as its whole 10-s windows, of which the processor would crop
    one at random) through ``ClapModel``: the pooled output (``encoder``) or its projection
    (``joint``, ``get_audio_features`` before its L2 normalisation), averaged over windows."""
    processor, model = transformers_clap
    clips = [track]
    if len(track) > WINDOW:
        clips = list(track[: len(track) // WINDOW * WINDOW].reshape(-1, WINDOW))
    features = processor(audio=clips, sampling_rate=RATE, return_tensors="pt")["input_features"]
    with torch.inference_mode():
        encoder = model.audio_model(input_features=features).pooler_output
        rows = encoder if space == "encoder" else model.audio_projection(encoder)
    return rows.mean(0).numpy()


def pure_tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)


def loud_track(seconds: float) -> np.ndarray:
    """Music peaking at 1.5: past full scale, which transformers does not clip."""
    track = random_track(7, seconds, RATE)
    return 1.5 * track / np.abs(track).max()


@pytest.mark.parametrize(
    "track", [pure_tone(3.3), loud_track(25.0)], ids=["tone-3.3s", "loud-music-25s"]
)
@pytest.mark.parametrize("space", ["joint", "encoder"])
def test_hf_folder_export_embeds_as_clap_processor_and_clap_model(
    embedder, transformers_clap, track, space
):
    """A Hugging Face folder follows transformers' preprocessing: no clipping or int16
    round trip, short tracks repeat-padded by ``ClapFeatureExtractor``."""
    expected = transformers_embedding(transformers_clap, track, space)
    got = embedder.embed_audio([track], sample_rate=RATE, space=space)
    assert_rows_close(expected[None], got, cosine_min=0.999999, rel=1e-5)


def test_short_track_is_repeated_then_zero_padded(embedder):
    clip = 0.3 * random_track(3, 3.0, RATE)  # 144000 samples: three copies, then 48000 zeros
    padded = np.concatenate([clip, clip, clip, np.zeros(WINDOW - 3 * len(clip), np.float32)])
    short = embedder.embed_audio([clip], sample_rate=RATE)
    np.testing.assert_allclose(short, embedder.embed_audio([padded], sample_rate=RATE), atol=1e-6)


def test_long_track_is_the_mean_of_its_whole_windows(embedder):
    track = 0.3 * random_track(4, 27.0, RATE)
    windows = embedder.embed_audio([track[:WINDOW], track[WINDOW : 2 * WINDOW]], sample_rate=RATE)
    got = embedder.embed_audio([track], sample_rate=RATE)
    np.testing.assert_allclose(got[0], windows.mean(axis=0), rtol=0, atol=1e-6)


def test_rows_do_not_depend_on_batching(small_clap_model_dir):
    tracks = [0.3 * random_track(s, seconds, RATE) for s, seconds in ((5, 35.0), (6, 4.0))]
    alone = runtime.Embedder(small_clap_model_dir, batch_size=1).embed_audio(tracks, RATE)
    for batch_size in (3, 16):
        model = runtime.Embedder(small_clap_model_dir, batch_size=batch_size)
        np.testing.assert_allclose(model.embed_audio(tracks, RATE), alone, rtol=0, atol=1e-6)


TEXTS = list(FAMILY_CASES["clap"].texts)


def test_texts_are_padded_to_77_as_the_reference_pads_them(embedder, small_clap_reference):
    """Every text padded to exactly 77 tokens, as the reference's tokenizer does; the
    embeddings' parity is in test_runtime_parity.py with every family's."""
    ((_, feed),) = embedder._text_batcher.batches(TEXTS, len(TEXTS))
    assert feed["input_ids"].shape == (len(TEXTS), 77)
    expected_ids = small_clap_reference.tokenize(TEXTS)["input_ids"].numpy()
    lengths = [len(t) for t in small_clap_reference.tokenizer(TEXTS)["input_ids"]]
    order = np.argsort(lengths, kind="stable")  # the batcher sorts stably by length
    np.testing.assert_array_equal(feed["input_ids"], expected_ids[order])


def test_cli_indexes_and_searches_with_a_clap_folder(small_clap_model_dir, tmp_path, capsys):
    music = tmp_path / "music"
    music.mkdir()
    sf.write(music / "a.wav", random_track(1, 12.0, RATE), RATE)
    sf.write(music / "b.flac", random_track(2, 4.0, 44100), 44100)
    common = ["--model-dir", str(small_clap_model_dir)]
    model = runtime.Embedder(small_clap_model_dir)
    catalog = tmp_path / "catalog"
    assert main(["index", str(music), "--out", str(catalog), *common]) == 0
    assert "indexed 2 new files" in capsys.readouterr().out
    assert NpzCatalog.load(catalog).matrix().shape == (2, model.embed_text(["x"]).shape[1])
    assert main(["search", str(catalog), "a calm piano", "-k", "1", *common]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[0] == "1"
    out = tmp_path / "text.npy"
    assert (
        main(["embed-text", "jazz", "rock", "--out", str(out), "--space", "encoder", *common]) == 0
    )
    np.testing.assert_array_equal(np.load(out), model.embed_text(["jazz", "rock"], space="encoder"))
    out = tmp_path / "audio.npy"
    assert main(["embed-audio", str(music / "a.wav"), "--out", str(out), *common]) == 0
    expected = model.embed_audio([music / "a.wav"])
    np.testing.assert_array_equal(np.load(out), expected)
