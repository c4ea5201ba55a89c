"""Decoding what libsndfile cannot read (m4a/AAC, mp4, webm, wma, …) with PyAV, whose wheel
bundles FFmpeg (no system ffmpeg). libsndfile stays first where it decodes, so those files
match the reference; PyAV is an optional extra, imported only when a file needs it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from runtime.errors import InputError, missing_dependency

# Music files by extension that only FFmpeg decodes here; a folder scan picks them up.
FFMPEG_EXTENSIONS = frozenset(
    {".m4a", ".m4b", ".mp4", ".aac", ".webm", ".mka", ".mkv", ".wma", ".asf", ".ac3", ".amr"}
)
SizeCheck = Callable[[int, int, int], None]  # (frames, channels, rate): raises if too large


def read_with_ffmpeg(path: Path, label: str, check_size: SizeCheck) -> tuple[np.ndarray, int]:
    """``[n, channels]`` float32 samples at the first audio stream's own rate. The size the
    container claims is checked first, and the decoded size as it grows (a container may
    claim nothing, or lie)."""
    try:
        import av
    except ImportError:
        raise missing_dependency(
            "PyAV", extra="formats", needed_for="decoding this file", item=label
        ) from None
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise InputError("cannot decode audio (the file has no audio stream)", item=label)
            stream = container.streams.audio[0]
            channels, rate = stream.channels, stream.rate
            if container.duration is not None:  # microseconds
                check_size(container.duration * (rate or 1) // 1_000_000, channels, rate)
            else:
                check_size(0, channels, rate)
            # Packed float32 at the stream's rate and layout: a format change only.
            convert = av.AudioResampler(format="flt", layout=stream.layout, rate=rate)
            blocks, frames = [], 0
            for frame in container.decode(stream):
                for out in convert.resample(frame):
                    blocks.append(out.to_ndarray().reshape(-1, channels))
                    frames += len(blocks[-1])
                check_size(frames, channels, rate)
            blocks += [out.to_ndarray().reshape(-1, channels) for out in convert.resample(None)]
    except InputError:
        raise
    except (av.FFmpegError, OSError, ValueError, RuntimeError) as err:
        raise InputError(f"cannot decode audio ({err})", item=label) from None
    if not blocks:
        raise InputError("the audio is empty", item=label)
    return np.concatenate(blocks), rate


def ffmpeg_seconds(path: Path) -> float:
    """The duration a container claims (for progress bars); 0 where it claims none or PyAV
    is not installed."""
    try:
        import av

        with av.open(str(path), metadata_errors="ignore") as container:
            return max(0.0, (container.duration or 0) / 1_000_000)
    except Exception:  # decoding reports the problem properly, later
        return 0.0
