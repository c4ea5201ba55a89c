"""Synthetic music-like audio: the demo's files (no data set can be downloaded), the tests'
tracks, the INT8 calibration set and the harder set INT8 is checked on.

    python -m export.synthetic OUT_DIR  # write the demo's five files (scripts/demo.sh)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 22050


def notes(frequencies: list[float], seconds_each: float, rate: int, harmonics: int) -> np.ndarray:
    """Decaying harmonic tones one after another: a crude plucked or struck instrument."""
    t = np.arange(int(seconds_each * rate)) / rate
    envelope = np.exp(-3.0 * t)
    parts = []
    for f in frequencies:
        tone = sum(np.sin(2 * np.pi * f * k * t) / k for k in range(1, harmonics + 1))
        parts.append(envelope * tone)
    return np.concatenate(parts)


def drums(seconds: float, rate: int, bpm: float, seed: int) -> np.ndarray:
    """Noise bursts on the beat over a low thump."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * rate))
    beat = int(60 / bpm * rate)
    hit = np.exp(-np.arange(beat) / (0.03 * rate))
    for start in range(0, len(out) - beat, beat):
        out[start : start + beat] += hit * (
            rng.standard_normal(beat) * 0.6 + np.sin(np.arange(beat) / rate * 2 * np.pi * 60)
        )
    return out


def random_track(seed: int, seconds: float, rate: int = RATE) -> np.ndarray:
    """A varied mono track: random notes, tempo, loudness and a drum layer."""
    rng = np.random.default_rng(seed)
    pitches = list(110.0 * 2 ** (rng.integers(0, 36, size=int(seconds) + 1) / 12))
    tone = notes(pitches, 1.0, rate, harmonics=int(rng.integers(1, 8)))
    beat = drums(seconds + 1, rate, bpm=float(rng.uniform(70, 170)), seed=seed)
    mix = rng.uniform(0, 1) * tone[: len(beat)] + rng.uniform(0, 1) * beat[: len(tone)]
    return (10 ** rng.uniform(-3, 0) * mix[: int(seconds * rate)]).astype(np.float32)


def sawtooth_riff(seconds: float, rate: int, seed: int) -> np.ndarray:
    """A repeating bass riff of band-limited sawtooth notes (every harmonic up to Nyquist at
    1/k): dense, bright spectra up to the top mel band, unlike ``notes``'s few harmonics."""
    rng = np.random.default_rng(seed)
    root = float(rng.uniform(55.0, 110.0))
    steps = rng.choice([0, 3, 5, 7, 10, 12], size=8)  # minor pentatonic
    step = int(60 / float(rng.uniform(100, 160)) / 2 * rate)  # eighth notes
    t = np.arange(step) / rate
    envelope = np.minimum(t / 0.005, 1.0) * np.exp(-4.0 * t)
    phrase = []
    for semitones in steps:
        f = root * 2 ** (semitones / 12)
        k = np.arange(1, int(rate / 2 / f) + 1)[:, None]
        phrase.append(envelope * (np.sin(2 * np.pi * f * k * t) / k).sum(axis=0) * 2 / np.pi)
    return np.resize(np.concatenate(phrase), int(seconds * rate))


def piano_phrase(seconds: float, rate: int, seed: int) -> np.ndarray:
    """Overlapping piano-like notes and chords: 16 stretched partials (inharmonicity
    B = 4e-4) each decaying faster the higher it is, and a short hammer click."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * rate) + 2 * rate)
    t = np.arange(2 * rate) / rate
    k = np.arange(1, 17)[:, None]
    start = 0
    while start < int(seconds * rate):
        for key in rng.integers(28, 64, size=int(rng.integers(1, 4))):  # A1..C6, up to a chord
            f = 440.0 * 2 ** ((key - 49) / 12) * k * np.sqrt(1 + 4e-4 * k**2)
            decay = np.exp(-(0.8 + 0.6 * k) * t) * (f < rate / 2)  # nothing above Nyquist
            tone = (np.sin(2 * np.pi * f * t) / k * decay).sum(axis=0)
            tone[: rate // 200] += rng.standard_normal(rate // 200) * 0.3
            out[start : start + len(t)] += tone
        start += int(rng.uniform(0.2, 0.6) * rate)
    return out[: int(seconds * rate)]


def drum_kit(seconds: float, rate: int, seed: int) -> np.ndarray:
    """Kick (a sine swept from 150 to 50 Hz), snare (noise and a 180-Hz tone) and hi-hat
    (differenced noise, 30 ms) on a random sixteenth-note pattern: sharp onsets."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.4 * rate)) / rate
    kick = np.sin(2 * np.pi * (50 * t + 100 * (1 - np.exp(-t / 0.03)) * 0.03)) * np.exp(-t / 0.12)
    snare = (rng.standard_normal(len(t)) + np.sin(2 * np.pi * 180 * t)) * np.exp(-t / 0.05)
    hat = np.diff(rng.standard_normal(len(t) + 1)) * np.exp(-t / 0.01)
    out = np.zeros(int(seconds * rate) + len(t))
    sixteenth = int(60 / float(rng.uniform(80, 180)) / 4 * rate)
    pattern = rng.random((3, 16)) < [[0.3], [0.2], [0.6]]
    for index, start in enumerate(range(0, int(seconds * rate), sixteenth)):
        for sound, hits in zip((kick, snare, 0.3 * hat), pattern, strict=True):
            if hits[index % 16]:
                out[start : start + len(t)] += sound
    return out[: int(seconds * rate)]


def noise_bursts(seconds: float, rate: int, seed: int) -> np.ndarray:
    """White-noise bursts of random length and level between stretches of digital silence."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * rate))
    start = 0
    while start < len(out):
        length = int(rng.uniform(0.02, 0.5) * rate)
        burst = out[start : start + length]
        burst[:] = rng.standard_normal(len(burst)) * 10 ** rng.uniform(-2, 0)
        start += length + int(rng.uniform(0.05, 1.0) * rate)
    return out


def at_dbfs(audio: np.ndarray, dbfs: float, measure: str = "peak") -> np.ndarray:
    """``audio`` scaled so that its ``peak`` or ``rms`` level is ``dbfs`` decibels relative
    to full scale."""
    level = np.abs(audio).max() if measure == "peak" else np.sqrt(np.mean(audio**2))
    return audio * 10 ** (dbfs / 20) / max(float(level), 1e-12)


# The harder synthetic set: sounds unlike random_track's (its few smooth harmonics and
# level changes), on which INT8 can fail where random_track's catalog says it does not.
HARD_KINDS = ("sawtooth riff", "piano phrase", "drum kit", "noise bursts", "quiet", "clipped")
LONG_SECONDS = 180.0


def hard_track(kind: str, seconds: float, rate: int, seed: int) -> np.ndarray:
    """One track of ``kind`` (``HARD_KINDS`` or ``long``), float32 in [-1, 1]: the sounds
    peaking at -1 dBFS; ``quiet`` a riff over a piano at -40 dBFS RMS (an int16 file's low
    bits); ``clipped`` riff and drums 12 dB too loud, hard-clipped; ``long`` a medley of
    every kind in sections of 10 to 30 s."""
    makers = {
        "sawtooth riff": sawtooth_riff,
        "piano phrase": piano_phrase,
        "drum kit": drum_kit,
        "noise bursts": noise_bursts,
    }
    if kind in makers:
        audio = at_dbfs(makers[kind](seconds, rate, seed), -1.0)
    elif kind == "quiet":
        mix = sawtooth_riff(seconds, rate, seed) + piano_phrase(seconds, rate, seed + 1)
        audio = at_dbfs(mix, -40.0, "rms")
    elif kind == "clipped":
        mix = sawtooth_riff(seconds, rate, seed) + drum_kit(seconds, rate, seed + 1)
        audio = np.clip(at_dbfs(mix, 12.0), -1.0, 1.0)
    elif kind == "long":
        rng = np.random.default_rng(seed)
        sections, total = [], 0.0
        while total < seconds:
            length = min(float(rng.uniform(10, 30)), seconds - total)
            part = str(rng.choice(HARD_KINDS))
            sections.append(hard_track(part, length, rate, int(rng.integers(2**31))))
            total += length
        audio = np.concatenate(sections)
    else:
        raise ValueError(f"unknown kind {kind!r}: one of {(*HARD_KINDS, 'long')}")
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def hard_set(
    seed: int = 0, seconds: float = 20.0, rate: int = RATE, long: bool = True
) -> dict[str, np.ndarray]:
    """The harder set: one track of each of ``HARD_KINDS`` (``seconds`` long) and, with
    ``long``, a ``LONG_SECONDS`` medley, by name; another ``seed`` gives other tracks of the
    same kinds (INT8 calibrates on seeds from 1 and is checked on seed 0)."""
    kinds = [*HARD_KINDS, "long"] if long else HARD_KINDS
    return {
        f"{kind} ({seed})": hard_track(
            kind, LONG_SECONDS if kind == "long" else seconds, rate, 1000 * seed + index
        )
        for index, kind in enumerate(kinds)
    }


def main(out_dir: str) -> None:
    out = Path(out_dir)
    (out / "more").mkdir(parents=True, exist_ok=True)
    d_major = [293.66, 369.99, 440.0, 587.33]
    piano = notes(d_major * 3, 1.0, RATE, harmonics=6)
    sf.write(out / "piano_in_d.wav", 0.3 * piano, RATE)
    sf.write(out / "quiet_piano.flac", 0.01 * notes(d_major[::-1] * 3, 1.0, RATE, 6), RATE)
    sf.write(out / "drums_fast.ogg", 0.5 * drums(14, RATE, bpm=160, seed=1), RATE)
    bass = notes([55.0, 73.42, 82.41, 55.0] * 6, 1.0, 44100, harmonics=3)
    groove = drums(24, 44100, bpm=96, seed=2)[: len(bass)]
    stereo = np.stack([0.4 * bass + 0.2 * groove, 0.2 * bass + 0.4 * groove], axis=1)
    sf.write(out / "more" / "bass_groove_stereo.wav", stereo, 44100)
    sf.write(out / "more" / "short_chime.wav", 0.5 * notes([880.0, 1320.0], 1.5, RATE, 2), RATE)
    print(f"wrote 5 files under {out}")


if __name__ == "__main__":
    main(sys.argv[1])
