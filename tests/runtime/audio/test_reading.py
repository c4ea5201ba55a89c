"""Preprocessing is bit-identical to the reference's."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from export.clap import reference as clap_reference
from export.synthetic import random_track
from export.ttmrpp import reference
from export.ttmrpp.hparams import PUBLISHED, HParams
from runtime.audio.reading import Preprocessing, load_track

HP = HParams.from_dict(PUBLISHED)  # the frontend hyper-parameters every model folder shares
TTMRPP = Preprocessing(HP.sr, HP.window_samples, True, True, "zero_pad")
CLAP_LAION = Preprocessing(48000, 480000, False, int16=True, short_audio="repeat_pad")
CLAP_HF = Preprocessing(48000, 480000, False, int16=False, short_audio="repeat_pad")


def runtime_windows(item, sample_rate=None, steps: Preprocessing = TTMRPP) -> np.ndarray:
    return load_track(0, item, sample_rate, steps).windows


def with_dc_offset(seconds: float, rate: int) -> np.ndarray:
    """A signal that never reaches zero: a zero appended by resampling would be its minimum."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 + 0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def stereo(seed: int, seconds: float, rate: int) -> np.ndarray:
    left, right = random_track(seed, seconds, rate), random_track(seed + 1, seconds, rate)
    return np.stack([left, 0.3 * right], axis=1)


@pytest.mark.parametrize("rate", [22050, 44100, 16000, 32000, 48000])
@pytest.mark.parametrize("seconds", [3.0, 10.0, 25.37])
def test_array_windows_equal_reference_bit_for_bit(rate, seconds):
    for audio in (random_track(1, seconds, rate), stereo(2, seconds, rate)):
        np.testing.assert_array_equal(
            runtime_windows(audio, rate), reference.track_windows(audio, rate, HP)
        )


@pytest.mark.parametrize("steps", [CLAP_LAION, CLAP_HF], ids=["laion", "huggingface"])
@pytest.mark.parametrize("rate", [48000, 44100, 16000])
@pytest.mark.parametrize(("seconds", "gain"), [(3.0, 1.0), (10.0, 0.1), (25.37, 3.0)])
def test_clap_windows_equal_reference_bit_for_bit(steps, rate, seconds, gain):
    """No normalisation, repeat padding; clipping (peaks at 3) and the int16 grid for
    laion_clap's checkpoints only, the samples as they are for transformers'."""
    for audio in (random_track(1, seconds, rate), stereo(2, seconds, rate)):
        audio = gain * audio / np.abs(audio).max()
        windows = runtime_windows(audio, rate, steps)
        np.testing.assert_array_equal(
            windows,
            clap_reference.track_windows(
                audio, rate, steps.sample_rate, steps.window_samples, int16=steps.int16
            ),
        )
        if gain > 1:
            assert (np.abs(windows).max() > 1) != steps.int16  # clipped for laion_clap only


@pytest.mark.parametrize(("rate", "samples"), [(32000, 12345), (16000, 661507), (96000, 12345)])
def test_resampled_length_and_padding_follow_librosa(rate, samples):
    # soxr returns one sample fewer than librosa's ceil(n * ratio) here; librosa pads a zero.
    audio = with_dc_offset(samples / rate, rate)
    np.testing.assert_array_equal(
        runtime_windows(audio, rate), reference.track_windows(audio, rate, HP)
    )


@pytest.mark.parametrize(
    ("name", "rate", "audio"),
    [
        ("stereo.wav", 22050, stereo(3, 25.0, 22050)),
        ("mono.flac", 44100, random_track(4, 12.0, 44100)),
        ("stereo.ogg", 22050, stereo(5, 31.0, 22050)),
        ("mono.mp3", 44100, random_track(6, 11.0, 44100)),
    ],
)
def test_file_windows_equal_reference_load_track_bit_for_bit(tmp_path, name, rate, audio):
    path = tmp_path / name
    sf.write(path, audio, rate)
    np.testing.assert_array_equal(runtime_windows(path), reference.load_track(path, HP))


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint8, np.uint16])
def test_integer_pcm_is_scaled_by_its_dtype_range(dtype):
    info = np.iinfo(dtype)
    half = 2.0 ** (info.bits - 1)
    centre = half if info.min == 0 else 0.0
    pcm = (random_track(7, 4.0) * 0.9 * (half - 1) + centre).astype(dtype)
    as_float = ((pcm.astype(np.float64) - centre) / half).astype(np.float32)
    assert np.abs(as_float).max() < 1.0
    np.testing.assert_array_equal(
        runtime_windows(pcm, 22050), reference.track_windows(as_float, 22050, HP)
    )


def test_digital_silence_becomes_zero_windows():
    windows = runtime_windows(np.full(30000, 0.25, np.float32), 22050)
    assert windows.shape == (1, HP.window_samples) and not windows.any()
