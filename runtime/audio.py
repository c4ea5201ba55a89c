"""Audio items → preprocessed 10-s windows, exactly as SPEC.md "Audio preprocessing" says:
decode → downmix → resample (soxr HQ) → peak-normalise → int16 round trip → window."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

from runtime.errors import InputError

AudioItem = str | os.PathLike | np.ndarray
# What soundfile (libsndfile) decodes; used to find music in folders.
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif"})


def find_audio_files(folder: Path) -> list[Path]:
    """Every file below ``folder`` with an audio extension, resolved and sorted."""
    if not folder.is_dir():
        raise InputError(f"{str(folder)!r} is not a folder")
    found = (p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    return sorted(p.resolve() for p in found if p.is_file())


@dataclass
class Track:
    """One item, decoded and cut into windows ``[n, window]`` float32."""

    windows: np.ndarray
    duration: float  # seconds of the original audio


def describe(index: int, item: object) -> str:
    if isinstance(item, (str, os.PathLike)):
        return f"item {index} ({os.fspath(item)!r})"
    return f"item {index}"


def decode(index: int, item: AudioItem, sample_rate: int | None) -> tuple[np.ndarray, int]:
    """A path or an array → mono float32 samples and their rate."""
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if not path.is_file():
            raise InputError(f"{describe(index, item)}: no such file")
        try:
            samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
            raise InputError(f"{describe(index, item)}: cannot decode audio ({err})") from None
    elif isinstance(item, np.ndarray):
        samples, rate = as_float_samples(index, item), sample_rate
        if rate is None:
            raise InputError(f"{describe(index, item)}: arrays need sample_rate")
    else:
        raise InputError(
            f"{describe(index, item)}: expected a path or a numpy array, got {type(item).__name__}"
        )
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise InputError(
            f"{describe(index, item)}: sample rate must be a positive integer, got {rate!r}"
        )
    if samples.shape[0] == 0:
        raise InputError(f"{describe(index, item)}: the audio is empty")
    if not np.isfinite(samples).all():
        raise InputError(f"{describe(index, item)}: the audio holds NaN or infinite samples")
    return samples.mean(axis=1, dtype=np.float32), int(rate)


def as_float_samples(index: int, array: np.ndarray) -> np.ndarray:
    """Mono ``[n]`` or channels-last ``[n, c]``, float or integer PCM → float32 ``[n, c]``."""
    if array.ndim not in (1, 2) or (array.ndim == 2 and array.shape[1] == 0):
        raise InputError(
            f"{describe(index, array)}: expected shape [n] or [n, channels], got {array.shape}"
        )
    if np.issubdtype(array.dtype, np.floating):
        samples = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.integer):
        # Full scale is half the dtype's range; unsigned PCM (8-bit WAV) is centred on it.
        half = 2.0 ** (np.iinfo(array.dtype).bits - 1)
        centre = half if np.issubdtype(array.dtype, np.unsignedinteger) else 0.0
        samples = ((array.astype(np.float64) - centre) / half).astype(np.float32)
    else:
        raise InputError(f"{describe(index, array)}: unsupported sample dtype {array.dtype}")
    return samples[:, None] if samples.ndim == 1 else samples


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """soxr HQ, then zero-padded or cut to ``ceil(n * target / rate)`` samples, as
    ``librosa.resample`` (the reference's resampler) does: soxr can return one sample
    fewer, and the reference's appended zero can be the track's minimum (DC offset)."""
    if rate == target:
        return samples
    out = soxr.resample(samples, rate, target, quality="HQ").astype(np.float32, copy=False)
    size = math.ceil(len(samples) * (target / rate))
    return np.pad(out, (0, max(0, size - len(out))))[:size]


def normalise(samples: np.ndarray) -> np.ndarray:
    """Peak-normalise to [-1, 1], then round-trip through int16; silence stays zeros."""
    low, high = samples.min(), samples.max()
    if high > low:
        samples = (samples - low) / (high - low) * 2 - 1
    else:
        samples = np.zeros_like(samples)
    return ((samples * 32767).astype(np.int16) / 32767.0).astype(np.float32)


def window(samples: np.ndarray, size: int) -> np.ndarray:
    """Non-overlapping windows; the remainder is dropped, a short track zero-padded."""
    if len(samples) < size:
        samples = np.pad(samples, (0, size - len(samples)))
    count = len(samples) // size
    return samples[: count * size].reshape(count, size)


def load_track(
    index: int, item: AudioItem, sample_rate: int | None, target: int, size: int
) -> Track:
    samples, rate = decode(index, item, sample_rate)
    windows = window(normalise(resample(samples, rate, target)), size)
    return Track(windows=windows, duration=len(samples) / rate)
