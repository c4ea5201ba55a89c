"""The log-mel frontend of TTMR++, twice: as the reference computes it and as the graph does.

``ReferenceLogMel`` follows the model's description literally (docs/models.md, "TTMR++" /
"Audio tower": complex ``torch.stft``; the floor uses the maximum over everything it is
given). ``GraphLogMel`` computes the same numbers with
operators TensorRT parses (no complex STFT) and takes the floor per track, so a track's
result never depends on what else shares the batch.
"""

from __future__ import annotations

import librosa
import numpy as np
import torch
from torch import nn

from export.frontend import LOG_FLOOR, MelPower
from export.ttmrpp.hparams import HParams

DYNAMIC_RANGE = 8.0  # the floor sits this many decades below the track's maximum


def mel_filters(hp: HParams) -> np.ndarray:
    """librosa's Slaney-scale, Slaney-normalised filter bank, ``[n_mels, n_fft // 2 + 1]``."""
    return librosa.filters.mel(sr=hp.sr, n_fft=hp.n_fft, n_mels=hp.n_mels).astype(np.float32)


def scale_log_mel(log_mel: torch.Tensor, maximum: torch.Tensor) -> torch.Tensor:
    """Apply the floor ``max(L, M - 8)`` and the affine ``(L + 4) / 4``."""
    return (torch.maximum(log_mel, maximum - DYNAMIC_RANGE) + 4.0) / 4.0


class ReferenceLogMel(nn.Module):
    """``[B, N]`` waveform → ``[B, 1, n_mels, frames]``; M is the max over the whole input."""

    def __init__(self, hp: HParams):
        super().__init__()
        self.n_fft = hp.n_fft
        self.hop = hp.hop_length
        self.register_buffer("window", torch.hann_window(hp.n_fft), persistent=False)
        self.register_buffer("filters", torch.from_numpy(mel_filters(hp)), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        stft = torch.stft(
            waveform,
            self.n_fft,
            self.hop,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        power = stft[..., :-1].abs() ** 2
        log_mel = torch.clamp(self.filters @ power, min=LOG_FLOOR).log10()
        return scale_log_mel(log_mel, log_mel.max())[:, None]


class GraphLogMel(nn.Module):
    """The exportable TTMR++ frontend: ``(waveform [B, N], track [B])`` → ``[B, 1, n_mels,
    frames]``. Rows with equal ``track`` ids share the floor's maximum, as the windows of one
    track do in the reference; rows of other tracks never enter it.
    """

    def __init__(self, hp: HParams):
        super().__init__()
        # The reference drops the last STFT frame; never computing it saves the work.
        frames = hp.window_samples // hp.hop_length
        self.mel = MelPower(hp.n_fft, hp.hop_length, frames, mel_filters(hp))

    def forward(self, waveform: torch.Tensor, track: torch.Tensor) -> torch.Tensor:
        log_mel = torch.clamp(self.mel(waveform), min=LOG_FLOOR).log10()  # [B, n_mels, F]
        window_max = log_mel.amax(dim=(1, 2))
        same_track = track[:, None] == track[None, :]
        # Every log-mel value is >= log10(LOG_FLOOR), so that value is neutral for the max.
        track_max = torch.where(same_track, window_max[None, :], np.log10(LOG_FLOOR)).amax(dim=1)
        return scale_log_mel(log_mel, track_max[:, None, None])[:, None]
