"""What TTMR++'s static INT8 audio tower is calibrated on, and what of it stays in float."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import count
from pathlib import Path

import numpy as np

from export.synthetic import RATE, hard_set, random_track
from export.ttmrpp.hparams import HParams
from export.ttmrpp.reference import track_windows
from runtime.audio.folders import scan_folder
from runtime.audio.reading import load_track
from runtime.catalog.store import readable
from runtime.errors import InputError
from runtime.manifest import Preprocessing

# TTMR++'s preprocessing besides its rate and window (the manifest's ``audio.preprocessing``).
PREPROCESSING = {"peak_normalise": True, "int16": True, "short_audio": "zero_pad"}

# Convolutions kept in float, by the names of their weights: the stem and the two 1×1s that
# read its output (layer1's first block's conv1 and downsample), which see the log-mel's fine
# detail and cost the most accuracy in INT8; from layer1's first 3×3 on no float stretch lies
# between INT8 layers, which is what makes the graph fast (docs/exporting.md).
FLOAT_CONVS = (
    "encoder.conv",
    "encoder.layer1.0.conv1.",
    "encoder.layer1.0.downsample.",
)
# Each activation's INT8 range ends at this percentile of its magnitudes over the calibration
# windows, not at their maximum: a rare peak no longer coarsens every other value's step
# (99.9 clipped too much, 99.999 too little).
ACTIVATION_PERCENTILE = 99.99


def calibration_tracks(hparams: dict, folder: Path | None, windows: int) -> list[np.ndarray]:
    """Preprocessed windows from the user's music (better) or synthetic tracks (default).
    The music is decoded by the runtime's own reader, so every format ``ttmr index`` takes
    calibrates; a file it cannot read is skipped with one line."""
    hp = HParams.from_dict(hparams)
    if folder is None:
        sources = (track_windows(track, RATE, hp) for track in synthetic_tracks())
        return first_windows(sources, windows)
    paths = scan_folder(folder).files
    if not paths:
        raise InputError(f"{folder}: no audio files to calibrate on")
    steps = Preprocessing(sample_rate=hp.sr, window_samples=hp.window_samples, **PREPROCESSING)
    used, skipped = [], 0

    def readable_tracks() -> Iterator[np.ndarray]:
        nonlocal skipped
        for index, path in enumerate(paths):
            try:
                track = load_track(index, path, None, steps).windows
            except (InputError, OSError) as err:
                why = err.reason if isinstance(err, InputError) else err.strerror or str(err)
                print(f"  skipped {readable(path)}: {why}")
                skipped += 1
                continue
            used.append(path)
            yield track

    tracks = first_windows(readable_tracks(), windows)
    if not tracks:
        raise InputError(f"{folder}: none of its {len(paths)} audio files could be read")
    print(
        f"  {sum(map(len, tracks))} windows from {len(used)} files of {folder}"
        + (f" ({skipped} unreadable, skipped)" if skipped else "")
    )
    return tracks


def first_windows(sources: Iterable[np.ndarray], windows: int) -> list[np.ndarray]:
    """The tracks of ``sources`` up to ``windows`` windows in all (the last one cut)."""
    tracks, total = [], 0
    for track in sources:
        track = track[: windows - total]
        tracks.append(track)
        total += len(track)
        if total >= windows:
            break
    return tracks


def synthetic_tracks() -> Iterator[np.ndarray]:
    """``random_track``s, each followed by the first 10 s of every kind of the hard set
    (loud, quiet, clipped, percussive, bright): calibrated on random tracks alone, INT8
    clipped the activations of noise bursts and sawtooth riffs (cosine 0.993 to fp32).
    Seeds start at 1: ``hard_set(0)`` is held out to measure the result."""
    for seed in count(1):
        yield random_track(seed, 20.0)
        yield from (track[: 10 * RATE] for track in hard_set(seed, long=False).values())
