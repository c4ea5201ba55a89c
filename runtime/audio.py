"""Audio items → preprocessed 10-s windows: decode → downmix → resample (soxr HQ) →
[peak-normalise] → [int16 round trip] → window. Which steps run, at which rate and window
size, and how a short track is padded is the model family's to say, in the manifest
(``Preprocessing``); TTMR++'s are SPEC.md's "Audio preprocessing"."""

from __future__ import annotations

import math
import os
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

from runtime.decode import FFMPEG_EXTENSIONS, read_with_ffmpeg
from runtime.errors import InputError, ItemError

AudioItem = str | os.PathLike | np.ndarray
# What one item may be, checked before anything is allocated or resampled: a crafted header
# (a FLAC claiming 2^36 frames, a WAV at 1 Hz) must not make the decoder or soxr allocate
# without bound or spin. Rates cover telephone audio to 768 kHz studio masters.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1_000, 768_000
MAX_AUDIO_SECONDS = 4 * 3600  # four hours: a long DJ mix or concert recording
# Decoded samples of one file, all channels: four hours of 48 kHz stereo (5.2 GB float32).
MAX_DECODED_SAMPLES = MAX_AUDIO_SECONDS * 48_000 * 2
SF_ERR_UNRECOGNISED_FORMAT = 1  # libsndfile's code for a file it cannot tell the format of
# What soundfile (libsndfile) decodes, and what PyAV (FFmpeg) decodes for it, by the
# extensions music files carry; used to find music in folders.
AUDIO_EXTENSIONS = (
    frozenset(
        {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc"}
        | {".caf", ".w64", ".rf64", ".au", ".snd", ".voc"}
    )
    | FFMPEG_EXTENSIONS
)


@dataclass
class FolderScan:
    """What a folder holds: its audio files (resolved, each once, sorted) and how many
    other files it has, by extension, so that a caller can say what it left out."""

    files: list[Path]
    skipped: Counter[str]


def scan_folder(folder: Path) -> FolderScan:
    """Every audio file below ``folder``. Hidden files and folders (and macOS's ``._``
    sidecars) are passed over, links to folders are not followed (no loops), and
    anything that is not a regular file (a FIFO, a dangling or looping link) is skipped."""
    if not folder.is_dir():
        raise InputError(f"{str(folder)!r} is not a folder")
    found: set[Path] = set()
    skipped: Counter[str] = Counter()
    for root, folders, names in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in names:
            if name.startswith("."):
                continue
            path = Path(root) / name
            if path.suffix.lower() not in AUDIO_EXTENSIONS:
                skipped[path.suffix.lower() or "(none)"] += 1
                continue
            try:
                resolved = path.resolve(strict=True)
            except (OSError, RuntimeError):  # dangling or looping link
                skipped[path.suffix.lower()] += 1
                continue
            if stat.S_ISREG(resolved.stat().st_mode):
                found.add(resolved)
            else:
                skipped[path.suffix.lower()] += 1
    return FolderScan(sorted(found), skipped)


def find_audio_files(folder: Path) -> list[Path]:
    """Every audio file below ``folder`` (``scan_folder``'s files)."""
    return scan_folder(folder).files


SHORT_AUDIO = ("zero_pad", "repeat_pad")


@dataclass(frozen=True)
class Preprocessing:
    """A family's preprocessing, as ``manifest["audio"]`` gives it."""

    sample_rate: int
    window_samples: int
    peak_normalise: bool  # min/max to [-1, 1] over the whole track
    int16: bool  # clip to [-1, 1], then round-trip through int16
    short_audio: str  # one of SHORT_AUDIO: how a track shorter than a window is filled

    @classmethod
    def from_manifest(cls, audio: dict) -> Preprocessing:
        if "preprocessing" not in audio:
            raise InputError(
                "manifest.json does not say how to preprocess audio (an older export): "
                "export the model again with export/to_onnx.py"
            )
        try:
            steps = cls(audio["sample_rate"], audio["window_samples"], **audio["preprocessing"])
        except TypeError as err:
            raise InputError(f"manifest.json: audio.preprocessing is malformed ({err})") from None
        if not all(isinstance(flag, bool) for flag in (steps.peak_normalise, steps.int16)):
            raise InputError("manifest.json: audio.preprocessing flags must be true or false")
        if steps.short_audio not in SHORT_AUDIO:
            raise InputError(
                f"manifest.json: short_audio {steps.short_audio!r} not in {SHORT_AUDIO}"
            )
        return steps


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
    """A path or an array → mono float32 samples and their rate, within the limits above."""
    if isinstance(item, (str, os.PathLike)):
        samples, rate = read_file(index, Path(item))
    elif isinstance(item, np.ndarray):
        samples, rate = as_float_samples(index, item), sample_rate
        if rate is None:
            raise ItemError(describe(index, item), "arrays need sample_rate")
        check_size(index, item, samples.shape[0], samples.shape[1], rate)
    else:
        raise ItemError(
            describe(index, item), f"expected a path or a numpy array, got {type(item).__name__}"
        )
    if samples.shape[0] == 0:
        raise ItemError(describe(index, item), "the audio is empty")
    if not np.isfinite(samples).all():
        raise ItemError(describe(index, item), "the audio holds NaN or infinite samples")
    return samples.mean(axis=1, dtype=np.float32), int(rate)


def read_file(index: int, path: Path) -> tuple[np.ndarray, int]:
    """Decode with libsndfile after checking the header's rate, length and channels; a
    format libsndfile does not recognise (m4a, webm, …) goes to FFmpeg (``runtime.decode``)."""
    if not path.is_file():
        raise ItemError(describe(index, path), "no such file")
    try:
        # Through a file object: given a path, libsndfile also reads a macOS "._" sidecar
        # beside the file (as a Sound Designer II resource fork), which breaks the file.
        with open(path, "rb") as fh, soundfile.SoundFile(fh) as audio:
            check_size(index, path, audio.frames, audio.channels, audio.samplerate)
            return audio.read(dtype="float32", always_2d=True), audio.samplerate
    except InputError:
        raise
    except soundfile.LibsndfileError as err:
        if err.code != SF_ERR_UNRECOGNISED_FORMAT:
            raise ItemError(describe(index, path), f"cannot decode audio ({err})") from None
    except (RuntimeError, TypeError, ValueError) as err:
        raise ItemError(describe(index, path), f"cannot decode audio ({err})") from None
    return read_with_ffmpeg(
        path, describe(index, path), lambda *size: check_size(index, path, *size)
    )


def check_size(index: int, item: AudioItem, frames: int, channels: int, rate: object) -> None:
    """The rate within [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE] Hz, at most MAX_AUDIO_SECONDS and
    MAX_DECODED_SAMPLES: what a header or a caller claims is checked before it is used."""
    name = describe(index, item)
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise ItemError(name, f"sample rate must be a positive integer, got {rate!r}")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ItemError(
            name,
            f"sample rate {rate} Hz is outside the supported "
            f"{MIN_SAMPLE_RATE}–{MAX_SAMPLE_RATE} Hz",
        )
    if frames / rate > MAX_AUDIO_SECONDS:
        raise ItemError(
            name,
            f"{frames / rate / 3600:.1f} hours of audio are more than the "
            f"{MAX_AUDIO_SECONDS / 3600:g}-hour limit per item",
        )
    if frames * channels > MAX_DECODED_SAMPLES:
        raise ItemError(
            name,
            f"{frames} frames × {channels} channels are more than "
            f"{MAX_DECODED_SAMPLES} samples per item",
        )


def as_float_samples(index: int, array: np.ndarray) -> np.ndarray:
    """Mono ``[n]`` or channels-last ``[n, c]``, float or integer PCM → float32 ``[n, c]``."""
    if array.ndim not in (1, 2) or (array.ndim == 2 and array.shape[1] == 0):
        raise ItemError(
            describe(index, array), f"expected shape [n] or [n, channels], got {array.shape}"
        )
    if array.ndim == 2 and array.shape[1] > array.shape[0]:
        raise ItemError(
            describe(index, array),
            f"shape {array.shape} looks channels-first (more "
            "channels than samples); pass [n, channels], e.g. array.T",
        )
    if np.issubdtype(array.dtype, np.floating):
        samples = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.integer):
        # Full scale is half the dtype's range; unsigned PCM (8-bit WAV) is centred on it.
        half = 2.0 ** (np.iinfo(array.dtype).bits - 1)
        centre = half if np.issubdtype(array.dtype, np.unsignedinteger) else 0.0
        samples = ((array.astype(np.float64) - centre) / half).astype(np.float32)
    else:
        raise ItemError(describe(index, array), f"unsupported sample dtype {array.dtype}")
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
    """Peak-normalise to [-1, 1]; silence stays zeros. In float32 as the reference does,
    unless the span of samples near ±FLT_MAX overflows float32: then in float64."""
    low, high = samples.min(), samples.max()
    if not high > low:
        return np.zeros_like(samples)
    with np.errstate(over="ignore"):
        span = high - low
    if not np.isfinite(span):
        low, high = np.float64(low), np.float64(high)
        return ((samples - low) / (high - low) * 2 - 1).astype(np.float32)
    return (samples - low) / span * 2 - 1


def int16_round_trip(samples: np.ndarray) -> np.ndarray:
    """Clip to [-1, 1], quantise to int16 (truncating) and back, as the references do."""
    return ((np.clip(samples, -1, 1) * 32767).astype(np.int16) / 32767.0).astype(np.float32)


def window(samples: np.ndarray, size: int, short_audio: str) -> np.ndarray:
    """Non-overlapping windows; the remainder is dropped. A short track is zero-padded, or
    repeated whole as often as it fits and then zero-padded (``ClapFeatureExtractor``)."""
    if len(samples) < size:
        if short_audio == "repeat_pad":
            samples = np.tile(samples, size // len(samples))
        samples = np.pad(samples, (0, size - len(samples)))
    count = len(samples) // size
    return samples[: count * size].reshape(count, size)


def load_track(index: int, item: AudioItem, sample_rate: int | None, steps: Preprocessing) -> Track:
    decoded, rate = decode(index, item, sample_rate)
    samples = resample(decoded, rate, steps.sample_rate)
    if not np.isfinite(samples).all():  # soxr's ringing past ±FLT_MAX
        raise ItemError(
            describe(index, item),
            "the audio overflows float32 when resampled (samples near ±3.4e38); scale it down",
        )
    if steps.peak_normalise:
        samples = normalise(samples)
    if steps.int16:
        samples = int16_round_trip(samples)
    windows = window(samples, steps.window_samples, steps.short_audio)
    return Track(windows=windows, duration=len(decoded) / rate)
