"""Write a few short synthetic music-like files for the demo (no data set can be downloaded).

python scripts/synth_audio.py OUT_DIR
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
