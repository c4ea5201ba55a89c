"""Audio items → preprocessed 10-s windows: decode → downmix → resample (soxr HQ) →
[peak-normalise] → [int16 round trip] → window. Which steps run, at which rate and window
size, and how a short track is padded is the model family's to say, in the manifest
(``runtime.manifest.Preprocessing``; docs/models.md says what each family's steps are)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

from runtime.audio.ffmpeg import FFMPEG_EXTENSIONS, read_with_ffmpeg
from runtime.errors import InputError
from runtime.manifest import Preprocessing

AudioItem = str | os.PathLike | np.ndarray
# What one item may be, checked before anything is allocated or resampled: a crafted header
# (a FLAC claiming 2^36 frames, a WAV at 1 Hz) must not make the decoder or soxr allocate
# without bound or spin. Rates cover telephone audio to 768 kHz studio masters.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1_000, 768_000
MAX_AUDIO_SECONDS = 4 * 3600  # four hours: a long DJ mix or concert recording
# Decoded samples of one file, all channels: four hours of 48 kHz stereo (5.2 GB float32).
MAX_DECODED_SAMPLES = MAX_AUDIO_SECONDS * 48_000 * 2
# Frames decoded (and resampled) at a time: 6 s at 44.1 kHz, 2 MB of stereo float32.
BLOCK_FRAMES = 1 << 18
SF_ERR_UNRECOGNISED_FORMAT = 1  # libsndfile's code for a file it cannot tell the format of
# What soundfile (libsndfile) decodes, and what PyAV (FFmpeg) decodes for it, by the
# extensions music files carry (``runtime.audio.folders`` finds music in folders by them).
AUDIO_EXTENSIONS = (
    frozenset(
        {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc"}
        | {".caf", ".w64", ".rf64", ".au", ".snd", ".voc"}
    )
    | FFMPEG_EXTENSIONS
)


@dataclass
class Track:
    """One item, decoded and cut into windows ``[n, window]`` float32."""

    windows: np.ndarray
    duration: float  # seconds of the original audio


def describe(index: int, item: object) -> str:
    if isinstance(item, (str, os.PathLike)):
        return f"item {index} ({os.fspath(item)!r})"
    return f"item {index}"


@dataclass(frozen=True)
class Source:
    """One item's audio, checked, as mono float32 blocks of at most BLOCK_FRAMES frames (a
    long file is never decoded whole). ``frames`` is what the header or the array claims."""

    index: int
    item: AudioItem
    rate: int
    frames: int
    read: Callable[[], Iterator[np.ndarray]]

    def blocks(self) -> Iterator[np.ndarray]:
        """Mono blocks; InputError on NaN/inf samples or an item that turns out empty."""
        count = 0
        for block in self.read():
            if not np.isfinite(block).all():
                raise InputError(
                    "the audio holds NaN or infinite samples", item=describe(self.index, self.item)
                )
            count += len(block)
            yield block.mean(axis=1, dtype=np.float32)
        if count == 0:
            raise InputError("the audio is empty", item=describe(self.index, self.item))


def open_source(index: int, item: AudioItem, sample_rate: int | None) -> Source:
    """A path or an array as a ``Source``, within the limits above; nothing is decoded yet."""
    if isinstance(item, (str, os.PathLike)):
        return file_source(index, Path(item))
    if isinstance(item, np.ndarray):
        check_array(index, item)
        if sample_rate is None:
            raise InputError("arrays need sample_rate", item=describe(index, item))
        channels = 1 if item.ndim == 1 else item.shape[1]
        check_size(index, item, item.shape[0], channels, sample_rate)
        if item.shape[0] == 0:
            raise InputError("the audio is empty", item=describe(index, item))
        return array_source(index, item, item, sample_rate)
    raise InputError(
        f"expected a path or a numpy array, got {type(item).__name__}", item=describe(index, item)
    )


def array_source(index: int, item: AudioItem, samples: np.ndarray, rate: int) -> Source:
    """Checked samples in memory (``check_array``), served in blocks like a file's."""

    def read() -> Iterator[np.ndarray]:
        for start in range(0, samples.shape[0], BLOCK_FRAMES):
            yield as_float_samples(index, samples[start : start + BLOCK_FRAMES])

    return Source(index, item, int(rate), samples.shape[0], read)


def decode(index: int, item: AudioItem, sample_rate: int | None) -> tuple[np.ndarray, int]:
    """A path or an array → all its mono float32 samples and their rate."""
    source = open_source(index, item, sample_rate)
    return gather(source.blocks(), source.frames), source.rate


def file_source(index: int, path: Path) -> Source:
    """libsndfile, after checking the header's rate, length and channels; each pass
    decodes the file again, block by block. A format libsndfile does not recognise (m4a,
    webm, …) is decoded by FFmpeg instead (``runtime.audio.ffmpeg``), once and whole."""
    name = describe(index, path)
    if not path.is_file():
        raise InputError("no such file", item=name)
    if path.stat().st_size == 0:  # FFmpeg's words for it are "Invalid data found"
        raise InputError("the file is empty (0 bytes)", item=name)

    def read() -> Iterator:
        """The header's ``(frames, rate)``, then the blocks."""
        try:
            # Through a file object: given a path, libsndfile also reads a macOS "._"
            # sidecar beside the file (as a Sound Designer II resource fork), which breaks it.
            with open(path, "rb") as fh, soundfile.SoundFile(fh) as audio:
                check_size(index, path, audio.frames, audio.channels, audio.samplerate)
                yield audio.frames, audio.samplerate
                # libsndfile's MP3 decoder gives other samples after a block boundary than
                # in one read (up to 0.009 apart, seen with libsndfile 1.2): one read there.
                size = -1 if audio.subtype.startswith("MPEG") else BLOCK_FRAMES
                while len(block := audio.read(size, dtype="float32", always_2d=True)):
                    yield block
        except InputError:
            raise
        except soundfile.LibsndfileError as err:
            if err.code == SF_ERR_UNRECOGNISED_FORMAT:
                raise  # FFmpeg's turn, below
            raise InputError(f"cannot decode audio ({err})", item=name) from None
        except (RuntimeError, TypeError, ValueError) as err:
            raise InputError(f"cannot decode audio ({err})", item=name) from None

    header = read()
    try:
        frames, rate = next(header)
    except soundfile.LibsndfileError:
        samples, rate = read_with_ffmpeg(path, name, lambda *size: check_size(index, path, *size))
        return array_source(index, path, samples, rate)
    header.close()

    def blocks() -> Iterator[np.ndarray]:
        stream = read()
        next(stream)
        yield from stream

    return Source(index, path, rate, frames, blocks)


def check_size(index: int, item: AudioItem, frames: int, channels: int, rate: object) -> None:
    """The rate within [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE] Hz, at most MAX_AUDIO_SECONDS and
    MAX_DECODED_SAMPLES: what a header or a caller claims is checked before it is used."""
    name = describe(index, item)
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise InputError(f"sample rate must be a positive integer, got {rate!r}", item=name)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise InputError(
            f"sample rate {rate} Hz is outside the supported "
            f"{MIN_SAMPLE_RATE}–{MAX_SAMPLE_RATE} Hz",
            item=name,
        )
    if frames / rate > MAX_AUDIO_SECONDS:
        raise InputError(
            f"{frames / rate / 3600:.1f} hours of audio are more than the "
            f"{MAX_AUDIO_SECONDS / 3600:g}-hour limit per item",
            item=name,
        )
    if frames * channels > MAX_DECODED_SAMPLES:
        raise InputError(
            f"{frames} frames × {channels} channels are more than "
            f"{MAX_DECODED_SAMPLES} samples per item",
            item=name,
        )


def check_array(index: int, array: np.ndarray) -> None:
    """Mono ``[n]`` or channels-last ``[n, c]``, of float or integer samples."""
    if array.ndim not in (1, 2) or (array.ndim == 2 and array.shape[1] == 0):
        raise InputError(
            f"expected shape [n] or [n, channels], got {array.shape}", item=describe(index, array)
        )
    if array.ndim == 2 and array.shape[1] > array.shape[0]:
        raise InputError(
            f"shape {array.shape} looks channels-first (more "
            "channels than samples); pass [n, channels], e.g. array.T",
            item=describe(index, array),
        )
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"unsupported sample dtype {array.dtype}", item=describe(index, array))


def as_float_samples(index: int, array: np.ndarray) -> np.ndarray:
    """A checked array (``check_array``), float or integer PCM → float32 ``[n, c]``."""
    if np.issubdtype(array.dtype, np.floating):
        samples = array.astype(np.float32)
    else:
        # Full scale is half the dtype's range; unsigned PCM (8-bit WAV) is centred on it.
        half = 2.0 ** (np.iinfo(array.dtype).bits - 1)
        centre = half if np.issubdtype(array.dtype, np.unsignedinteger) else 0.0
        samples = ((array.astype(np.float64) - centre) / half).astype(np.float32)
    return samples[:, None] if samples.ndim == 1 else samples


def gather(blocks: Iterable[np.ndarray], expected: int) -> np.ndarray:
    """Blocks → one array, written into a buffer of the ``expected`` size (grown if a
    decoder yields more), so a long track is never held twice."""
    out, used = np.empty(expected, np.float32), 0
    for block in blocks:
        if used + len(block) > len(out):
            grown = np.empty(max(2 * len(out), used + len(block)), np.float32)
            grown[:used] = out[:used]
            out = grown
        out[used : used + len(block)] = block
        used += len(block)
    return out[:used]


def resampled_length(frames: int, rate: int, target: int) -> int:
    return math.ceil(frames * (target / rate))


def resample(source: Source, target: int) -> Iterator[np.ndarray]:
    """The source's blocks through soxr HQ's streaming resampler (equal to its one-shot
    result), then zero-padded or cut to ``ceil(n * target / rate)`` samples, as
    ``librosa.resample`` (the reference's resampler) does: soxr can return one sample
    fewer, and the reference's appended zero can be the track's minimum (DC offset).
    The last block is held back until the end, where that cut is made."""
    if source.rate == target:
        yield from source.blocks()
        return
    stream = soxr.ResampleStream(source.rate, target, 1, dtype="float32", quality="HQ")
    pending, sent, frames = np.zeros(0, np.float32), 0, 0
    for block in source.blocks():
        frames += len(block)
        out = stream.resample_chunk(block)
        if len(out):
            yield pending
            sent += len(pending)
            pending = out
    pending = np.concatenate([pending, stream.resample_chunk(np.zeros(0, np.float32), last=True)])
    size = resampled_length(frames, source.rate, target)
    yield np.pad(pending, (0, max(0, size - sent - len(pending))))[: max(0, size - sent)]


def resampled_blocks(source: Source, target: int) -> Iterator[np.ndarray]:
    """``resample``'s blocks, each checked finite (soxr's ringing past ±FLT_MAX)."""
    for block in resample(source, target):
        if not np.isfinite(block).all():
            raise InputError(
                "the audio overflows float32 when resampled (samples near ±3.4e38); scale it down",
                item=describe(source.index, source.item),
            )
        yield block


def normalise(samples: np.ndarray, low: np.float32, high: np.float32) -> np.ndarray:
    """Peak-normalise to [-1, 1] given the track's minimum and maximum; silence stays zeros.
    In float32 as the reference does, unless the span of samples near ±FLT_MAX overflows
    float32: then in float64."""
    if not high > low:
        return np.zeros_like(samples)
    with np.errstate(over="ignore"):
        width = high - low
    if not np.isfinite(width):
        low, high = np.float64(low), np.float64(high)
        return ((samples - low) / (high - low) * 2 - 1).astype(np.float32)
    return (samples - low) / width * 2 - 1


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


def preprocess_in_place(samples: np.ndarray, steps: Preprocessing) -> None:
    """Peak normalisation and the int16 round trip, block by block into ``samples`` itself,
    so a long track is never held twice; a family with neither step leaves it untouched."""
    if not (steps.peak_normalise or steps.int16):
        return
    if steps.peak_normalise:
        low, high = samples.min(), samples.max()
    for start in range(0, len(samples), BLOCK_FRAMES):
        block = samples[start : start + BLOCK_FRAMES]
        if steps.peak_normalise:
            block = normalise(block, low, high)
        samples[start : start + BLOCK_FRAMES] = int16_round_trip(block) if steps.int16 else block


def load_track(index: int, item: AudioItem, sample_rate: int | None, steps: Preprocessing) -> Track:
    """Decode and resample block by block into the track at the model's rate (never the
    decoded original, for a long file), then preprocess it in place. The item is decoded
    once: a second pass for the minimum and maximum doubled the cost of a 30-s MP3."""
    source = open_source(index, item, sample_rate)
    target = steps.sample_rate
    size = resampled_length(source.frames, source.rate, target)
    samples = gather(resampled_blocks(source, target), size)
    preprocess_in_place(samples, steps)
    windows = window(samples, steps.window_samples, steps.short_audio)
    return Track(windows=windows, duration=source.frames / source.rate)
