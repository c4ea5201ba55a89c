"""MusCALL's log-mel in float64 numpy, written from the torchaudio recipe the README states
(``MelSpectrogram(power=2, normalized=True)`` → ``AmplitudeToDB(top_db=100)`` per clip),
with librosa's HTK filter bank: independent of the code under test."""

from __future__ import annotations

import warnings

import librosa
import numpy as np


def htk_bank(rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """``[n_mels, bins]``: librosa's HTK-scale triangles, no normalisation, float64."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns of the empty filters above Nyquist
        return librosa.filters.mel(
            sr=rate,
            n_fft=n_fft,
            n_mels=n_mels,
            fmin=f_min,
            fmax=f_max,
            htk=True,
            norm=None,
            dtype=np.float64,
        )


def log_mel(windows: np.ndarray, bank: np.ndarray, n_fft: int = 1024) -> np.ndarray:
    """``[B, N]`` → ``[B, n_mels, frames]`` dB, clamped 100 dB under each clip's maximum."""
    hop = n_fft // 2
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    padded = np.pad(windows.astype(np.float64), ((0, 0), (n_fft // 2, n_fft // 2)), "reflect")
    frames = 1 + windows.shape[1] // hop
    index = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    spectrum = np.fft.rfft(padded[:, index] * window, axis=-1) / np.sqrt(np.sum(window**2))
    mel = np.abs(spectrum) ** 2 @ bank.T  # [B, frames, n_mels]
    db = 10 * np.log10(np.maximum(mel, 1e-10))
    db = np.maximum(db, db.max(axis=(1, 2), keepdims=True) - 100)
    return db.transpose(0, 2, 1)
