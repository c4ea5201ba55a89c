"""MusCALL's log-mel, twice: as the reference computes it and as the graph does.

The recipe is torchaudio's ``MelSpectrogram(power=2, normalized=True)`` then
``AmplitudeToDB(top_db=100)``: periodic Hann window of ``n_fft``, hop ``n_fft // 2``,
centred frames with reflect padding, the complex STFT divided by ``sqrt(sum(window²))``,
an HTK mel bank without area normalisation from ``f_min`` to ``f_max`` (filters above
Nyquist stay all zero: with the default ``f_max`` 11025 Hz at 16 kHz the top 12 do), then
``10·log10(max(x, 1e-10))`` clamped from below at 100 dB under the clip's own maximum.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from export.frontend import LOG_FLOOR, MelPower
from export.muscall.config import AudioConfig

TOP_DB = 100.0  # the dB range kept below each clip's maximum


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filters(audio: AudioConfig) -> np.ndarray:
    """``[n_fft // 2 + 1, n_mels]`` float64: triangles whose corners are equally spaced on
    the HTK mel scale, peak 1, no area normalisation; bins stop at Nyquist, so a triangle
    that starts above it is all zero."""
    bins = np.linspace(0.0, audio.sample_rate // 2, audio.n_fft // 2 + 1)
    corners = mel_to_hz(
        np.linspace(hz_to_mel(audio.f_min), hz_to_mel(audio.f_max), audio.n_mels + 2)
    )
    rise = (bins[:, None] - corners[None, :-2]) / np.diff(corners)[None, :-1]
    fall = (corners[None, 2:] - bins[:, None]) / np.diff(corners)[None, 1:]
    return np.maximum(0.0, np.minimum(rise, fall))


def decibels(mel: torch.Tensor) -> torch.Tensor:
    """``[B, n_mels, frames]`` power → dB, each row clamped at its own maximum − 100 dB (a
    clip never depends on its batch-mates)."""
    db = 10.0 * torch.clamp(mel, min=LOG_FLOOR).log10()
    return torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - TOP_DB)


class Spectrogram(nn.Module):
    """Holds the window, as the checkpoint's ``spec.spectrogram.window``."""

    def __init__(self, n_fft: int):
        super().__init__()
        self.register_buffer("window", torch.hann_window(n_fft))


class MelScale(nn.Module):
    """Holds the filter bank ``[bins, n_mels]``, as the checkpoint's ``spec.mel_scale.fb``."""

    def __init__(self, audio: AudioConfig):
        super().__init__()
        self.register_buffer("fb", torch.from_numpy(mel_filters(audio)).float())


class TorchaudioLogMel(nn.Module):
    """The reference frontend: ``[B, N]`` → ``[B, 1, n_mels, frames]`` dB, literally the
    recipe (complex ``torch.stft``, float32), from the window and bank it holds."""

    def __init__(self, audio: AudioConfig):
        super().__init__()
        self.n_fft, self.hop = audio.n_fft, audio.hop_length
        self.spectrogram = Spectrogram(audio.n_fft)
        self.mel_scale = MelScale(audio)

    def power(self, waveform: torch.Tensor) -> torch.Tensor:
        """``[B, bins, frames]``: |STFT / sqrt(sum(window²))|²."""
        window = self.spectrogram.window
        stft = torch.stft(
            waveform,
            self.n_fft,
            self.hop,
            window=window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        return (stft / window.pow(2).sum().sqrt()).abs() ** 2

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        mel = (self.power(waveform).transpose(1, 2) @ self.mel_scale.fb).transpose(1, 2)
        return decibels(mel)[:, None]


class GraphLogMel(nn.Module):
    """The exportable frontend, ``[B, N]`` → ``[B, 1, n_mels, frames]`` dB: the shared
    three-stage DFT (``MelPower``) with the normalisation folded into the bank. Its stages
    run in float64: the dB values must match a float64 computation to 1e-4 dB down to the
    100-dB clamp, finer than float32 rounding of the quietest kept bins allows."""

    def __init__(self, frontend: TorchaudioLogMel, audio: AudioConfig):
        super().__init__()
        window = frontend.spectrogram.window.double()
        bank = frontend.mel_scale.fb.double().T / window.pow(2).sum()
        self.mel = MelPower(
            audio.n_fft, audio.hop_length, audio.frames, bank.numpy(), dtype=torch.float64
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return decibels(self.mel(waveform))[:, None]
