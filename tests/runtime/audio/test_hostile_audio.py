"""Crafted audio that would make the decoder or resampler allocate without bound, spin, or
overflow is refused as an InputError naming the item, before any memory is committed."""

from __future__ import annotations

import resource
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import runtime
from export.synthetic import random_track
from runtime.audio.reading import MAX_AUDIO_SECONDS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE


@pytest.fixture(scope="module")
def embedder(small_model_dir):
    return runtime.Embedder(small_model_dir)


def flac_claiming_frames(folder: Path, frames: int) -> Path:
    """A real one-second FLAC whose STREAMINFO says it holds ``frames`` frames."""
    path = folder / "liar.flac"
    sf.write(path, random_track(3, 1.0), 22050, format="FLAC")
    data = bytearray(path.read_bytes())
    # "fLaC", a 4-byte block header, then STREAMINFO: the 64 bits at byte 10 of it hold
    # sample rate (20), channels - 1 (3), bits per sample - 1 (5), total samples (36).
    start = 4 + 4 + 10
    (packed,) = struct.unpack(">Q", data[start : start + 8])
    packed = (packed & ~((1 << 36) - 1)) | frames
    data[start : start + 8] = struct.pack(">Q", packed)
    path.write_bytes(bytes(data))
    return path


def wav_at_rate(folder: Path, rate: int) -> Path:
    """A WAV whose header says ``rate`` Hz (soundfile refuses to write such rates itself)."""
    path = folder / f"at_{rate}hz.wav"
    sf.write(path, random_track(4, 0.5), 22050, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[24:28] = struct.pack("<I", rate)  # fmt chunk: sample rate, then byte rate
    data[28:32] = struct.pack("<I", rate * 2)
    path.write_bytes(bytes(data))
    return path


def test_flac_claiming_2_to_the_36_frames_is_refused_before_allocating(embedder, tmp_path):
    liar = flac_claiming_frames(tmp_path, (1 << 36) - 1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(runtime.InputError, match=r"item 0 \('.*liar\.flac'\): .*hours of audio"):
        embedder.embed_audio([liar])
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 200  # refused from the header, not after a read


@pytest.mark.parametrize("rate", [1, 999, MAX_SAMPLE_RATE + 1])
def test_wav_header_outside_the_rate_range_is_refused(embedder, tmp_path, rate):
    with pytest.raises(runtime.InputError, match=rf"item 0 .*: sample rate {rate} Hz is outside"):
        embedder.embed_audio([wav_at_rate(tmp_path, rate)])


@pytest.mark.parametrize("rate", [1, 2**31 - 1, 2**48, 2**62])
def test_array_rates_outside_the_range_are_refused_rather_than_resampled(embedder, rate):
    with pytest.raises(runtime.InputError, match=r"item 0: sample rate .* is outside"):
        embedder.embed_audio([np.zeros(1000, np.float32)], sample_rate=rate)


@pytest.mark.parametrize("rate", [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE])
def test_rates_at_the_ends_of_the_range_are_embedded(embedder, rate):
    track = random_track(5, 1.0, rate)
    assert np.isfinite(embedder.embed_audio([track], sample_rate=rate)).all()


def test_an_array_longer_than_the_limit_is_refused_by_duration(embedder):
    # A strided view: a five-hour "track" without five hours of memory.
    samples = np.broadcast_to(np.float32(0.1), (int(MAX_AUDIO_SECONDS * 1_000) + 1,))
    with pytest.raises(runtime.InputError, match=r"item 0: 4\.0 hours of audio are more than"):
        embedder.embed_audio([samples], sample_rate=1_000)


def test_channels_first_arrays_are_refused_with_a_hint_to_transpose(embedder):
    stereo = np.stack([random_track(6, 1.0), random_track(7, 1.0)])  # [2, n]
    with pytest.raises(runtime.InputError, match=r"item 0: shape \(2, 22050\) .*array\.T"):
        embedder.embed_audio([stereo], sample_rate=22050)
    assert np.isfinite(embedder.embed_audio([stereo.T], sample_rate=22050)).all()


def test_samples_near_float32_max_are_normalised_exactly_not_to_nan(embedder):
    """Peak normalisation is scale-free: a track at ±FLT_MAX gives the embedding of the
    same track at ±1 (its float32 span overflows, so the span is taken in float64)."""
    unit = random_track(8, 3.0)
    unit = unit / np.abs(unit).max()
    huge = unit * np.float32(np.finfo(np.float32).max)
    with np.errstate(over="ignore"):
        assert np.isfinite(huge).all() and not np.isfinite(huge.max() - huge.min())
    at_max, at_one = embedder.embed_audio([huge, unit], sample_rate=22050)
    assert np.isfinite(at_max).all()
    cosine = at_max @ at_one / np.linalg.norm(at_max) / np.linalg.norm(at_one)
    assert cosine > 0.999999


def test_resampling_overflow_past_float32_is_an_input_error_not_nan(embedder):
    """A square wave at FLT_MAX rings past it when resampled: the windows would hold inf."""
    square = np.tile(np.r_[np.ones(50), -np.ones(50)], 300).astype(np.float32)
    square *= np.finfo(np.float32).max
    with pytest.raises(runtime.InputError, match=r"item 0: the audio overflows float32"):
        embedder.embed_audio([square], sample_rate=16_000)
