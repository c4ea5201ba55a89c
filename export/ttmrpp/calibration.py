"""What TTMR++'s static INT8 audio tower is calibrated on, and what of it stays in float."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count
from pathlib import Path

import numpy as np

from export.synthetic import RATE, hard_set, random_track
from export.ttmrpp.hparams import HParams
from export.ttmrpp.reference import load_track, track_windows
from runtime.audio.reading import AUDIO_EXTENSIONS

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
    """Preprocessed windows from the user's music (better) or synthetic tracks (default)."""
    hp = HParams.from_dict(hparams)
    tracks, total = [], 0
    if folder is not None:
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
        if not paths:
            raise ValueError(f"{folder}: no audio files to calibrate on")
        sources = (load_track(p, hp) for p in paths)
    else:
        sources = (track_windows(track, RATE, hp) for track in synthetic_tracks())
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
