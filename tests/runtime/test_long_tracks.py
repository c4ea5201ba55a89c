"""Long tracks: read and resampled in blocks exactly as in one piece, their windows split
across graph calls of at most ``batch_size`` rows, and the embedding still the reference's."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import soxr

import runtime
from export.synthetic import random_track
from export.ttmrpp import reference
from export.ttmrpp.hparams import PUBLISHED, HParams
from runtime.audio import reading as audio
from runtime.audio.reading import Preprocessing, Track, load_track, open_source
from runtime.batching import batches, track_groups
from runtime.engines.onnxruntime import OnnxRuntimeSession
from tests.helpers import assert_close, one_loud_window

HP = HParams.from_dict(PUBLISHED)
TTMRPP = Preprocessing(HP.sr, HP.window_samples, True, True, "zero_pad")
SMALL_BLOCKS = 10_007  # frames: many blocks, none aligned with anything


@pytest.mark.parametrize("rate", [8000, 44100, 48000, 96000])
def test_streaming_resampler_equals_one_shot_soxr(monkeypatch, rate):
    monkeypatch.setattr(audio, "BLOCK_FRAMES", SMALL_BLOCKS)
    samples = random_track(rate, 7.3, rate)
    streamed = np.concatenate(list(audio.resample(open_source(0, samples, rate), 22050)))
    one_shot = soxr.resample(samples, rate, 22050, quality="HQ")
    size = math.ceil(len(samples) * 22050 / rate)  # librosa's length; soxr may be one short
    np.testing.assert_array_equal(streamed, np.pad(one_shot, (0, size - len(one_shot)))[:size])


@pytest.mark.parametrize(("name", "rate"), [("a.flac", 44100), ("b.wav", 22050), ("c.ogg", 32000)])
def test_files_read_in_small_blocks_equal_reference_load_track(monkeypatch, tmp_path, name, rate):
    """Read and resampled in many blocks, normalised in blocks, bit for bit."""
    monkeypatch.setattr(audio, "BLOCK_FRAMES", SMALL_BLOCKS)
    stereo = np.stack([random_track(21, 23.0, rate), random_track(22, 23.0, rate)], 1)
    sf.write(tmp_path / name, stereo, rate)
    windows = load_track(0, tmp_path / name, None, TTMRPP).windows
    np.testing.assert_array_equal(windows, reference.load_track(tmp_path / name, HP))


def test_windows_of_any_tracks_fill_calls_of_batch_size_rows_with_their_tracks_floors():
    tracks = [Track(np.full((n, 2), i, np.float32), 10.0 * n) for i, n in enumerate((3, 5, 2))]
    found = list(batches(tracks, 4, floors=[-1.0, -2.0, -3.0]))
    assert [len(b.owners) for b in found] == [4, 4, 2]
    owners = np.concatenate([b.owners for b in found])
    np.testing.assert_array_equal(owners, [0, 0, 0, 1, 1, 1, 1, 1, 2, 2])
    waveform = np.concatenate([b.feed["waveform"][:, 0] for b in found])
    np.testing.assert_array_equal(waveform, owners)  # each row is its own track's window
    floor = np.concatenate([b.feed["floor"] for b in found])
    np.testing.assert_array_equal(floor, -1.0 - owners)
    assert "floor" not in next(batches(tracks, 4)).feed  # a family without a floor graph


def test_tracks_group_up_to_a_number_of_windows_with_a_longer_track_alone():
    tracks = [Track(np.zeros((n, 2), np.float32), 10.0 * n) for n in (3, 5, 2, 9, 1)]
    sizes = [[len(t.windows) for t in group] for group in track_groups(tracks, 8)]
    assert sizes == [[3, 5], [2], [9], [1]]
    assert [len(group) for group in track_groups(tracks, None)] == [5]
    assert list(track_groups([], 8)) == [[]]  # one empty group: the caller's result is [0, D]


def spied_calls(monkeypatch) -> list[tuple[str, int]]:
    """Every graph call from now on, as (first output asked for, rows)."""
    calls: list[tuple[str, int]] = []
    real_run = OnnxRuntimeSession.run

    def run(self, names, feed):
        calls.append((names[0], len(feed["waveform"])))
        return real_run(self, names, feed)

    monkeypatch.setattr(OnnxRuntimeSession, "run", run)
    return calls


def test_a_10_minute_track_at_batch_size_8_never_makes_a_call_of_more_than_8_rows(
    small_model_dir, monkeypatch
):
    model = runtime.Embedder(small_model_dir, batch_size=8)
    calls = spied_calls(monkeypatch)
    model.embed_audio([np.tile(random_track(23, 30.0), 20)], sample_rate=22050)
    for output in ("floor", "joint"):  # the floor graph's calls, then the audio graph's
        rows = [count for name, count in calls if name == output]
        assert rows == [8] * 7 + [4]  # 60 windows
    assert len(calls) == 16


@pytest.mark.parametrize(("windows", "loud"), [(1, 0), (3, 2), (18, 13), (100, 91)])
def test_long_tracks_split_across_calls_match_reference(
    small_model_dir, small_reference, windows, loud
):
    track = one_loud_window(windows, loud, seed=windows)
    got = runtime.Embedder(small_model_dir, batch_size=8).embed_audio([track], sample_rate=22050)
    expected = small_reference.embed_track(track, 22050)[0][None]
    assert_close(expected, got, 0.999999, 1e-5)


@pytest.mark.slow
def test_full_size_18_window_track_split_across_calls_matches_reference(
    demo_model_dir, demo_reference
):
    track = one_loud_window(18, 15, seed=40)
    got = runtime.Embedder(demo_model_dir, batch_size=8).embed_audio([track], sample_rate=22050)
    assert_close(demo_reference.embed_track(track, 22050)[0][None], got, 0.999999, 1e-5)
