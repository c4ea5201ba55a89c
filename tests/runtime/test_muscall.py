"""runtime.Embedder and the CLI with MusCALL model folders beyond the parity every family
gets (tests/runtime/test_parity.py): zero-padded short tracks, the mean over whole 20-s
windows for long ones, and the CLI on the full-size demo. Nothing in the runtime names the
family: the manifest says all of this."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

import runtime
from export.synthetic import random_track
from runtime.catalog.npz import NpzCatalog
from runtime.cli.main import main
from tests.helpers import FAMILY_CASES

RATE, WINDOW = 16000, 320000
TEXTS = ["", "a calm solo piano piece in D", "Café: naïve\tjazz ♪", "fast drums " * 40]
assert_close = FAMILY_CASES["muscall"].assert_close


@pytest.fixture(scope="module")
def embedder(small_muscall_model_dir):
    return runtime.Embedder(small_muscall_model_dir, batch_size=4)


def test_short_track_is_zero_padded_and_a_long_one_averaged(embedder):
    clip = 0.3 * random_track(3, 3.0, RATE)
    padded = np.concatenate([clip, np.zeros(WINDOW - len(clip), np.float32)])
    short = embedder.embed_audio([clip, padded], sample_rate=RATE)
    np.testing.assert_allclose(short[0], short[1], rtol=0, atol=1e-6)
    track = 0.3 * random_track(4, 47.0, RATE)
    windows = embedder.embed_audio([track[:WINDOW], track[WINDOW : 2 * WINDOW]], sample_rate=RATE)
    got = embedder.embed_audio([track], sample_rate=RATE)
    np.testing.assert_allclose(got[0], windows.mean(axis=0), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_cli_indexes_and_searches_with_a_full_size_muscall_folder(
    demo_muscall_model_dir, demo_muscall_reference, tmp_path, capsys
):
    music = tmp_path / "music"
    music.mkdir()
    sf.write(music / "a.wav", random_track(1, 22.0, 44100), 44100)
    sf.write(music / "b.flac", random_track(2, 4.0, RATE), RATE)
    common = ["--model-dir", str(demo_muscall_model_dir)]
    catalog = tmp_path / "catalog"
    assert main(["index", str(music), "--out", str(catalog), *common]) == 0
    assert "indexed 2 new files" in capsys.readouterr().out
    rows = NpzCatalog.load(catalog)
    paths, embeddings = rows.paths, rows.matrix()
    assert embeddings.shape == (2, 512)
    for path, row in zip(paths, embeddings, strict=True):
        audio, rate = sf.read(path, dtype="float32")
        assert_close(demo_muscall_reference.embed_track(audio, rate)[0][None], row[None])
    assert main(["search", str(catalog), "a calm piano", "-k", "1", *common]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[0] == "1"
    out = tmp_path / "text.npy"
    assert main(["embed-text", *TEXTS, "--out", str(out), "--space", "encoder", *common]) == 0
    assert_close(demo_muscall_reference.text_encode(TEXTS)[1].numpy(), np.load(out))
