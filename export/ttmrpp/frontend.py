"""The log-mel frontend of TTMR++, twice: as the reference computes it and as the graph does.

``ReferenceLogMel`` follows the model's description literally (docs/models.md, "TTMR++" /
"Audio tower": complex ``torch.stft``; the floor uses the maximum over everything it is
given). ``GraphLogMel`` computes the same numbers with operators TensorRT parses (no
complex STFT) and takes each row's floor as an input: ``WindowFloor`` gives each window's
floor (its maximum − 8), the runtime takes the highest over a track's windows
(``runtime.batching.track_floors``), so a track's result never depends on what else shares
a call, and its windows may be split across calls.
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


def scale_log_mel(log_mel: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """Apply the floor ``max(L, floor)`` (``floor`` is ``M - 8``) and the affine
    ``(L + 4) / 4``."""
    return (torch.maximum(log_mel, floor) + 4.0) / 4.0


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
        return scale_log_mel(log_mel, log_mel.max() - DYNAMIC_RANGE)[:, None]


class LogMel(nn.Module):
    """``[B, N]`` waveform → the unfloored log-mel ``[B, n_mels, frames]``, exportable."""

    def __init__(self, hp: HParams):
        super().__init__()
        # The reference drops the last STFT frame; never computing it saves the work.
        frames = hp.window_samples // hp.hop_length
        self.mel = MelPower(hp.n_fft, hp.hop_length, frames, mel_filters(hp))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.mel(waveform), min=LOG_FLOOR).log10()


class GraphLogMel(LogMel):
    """The exportable TTMR++ frontend: ``(waveform [B, N], floor [B])`` → ``[B, 1, n_mels,
    frames]``, each row floored at its own ``floor`` (its track's maximum − 8)."""

    def forward(self, waveform: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
        return scale_log_mel(super().forward(waveform), floor[:, None, None])[:, None]


class WindowFloor(LogMel):
    """``[B, N]`` waveform → ``[B]``: each window's floor, its log-mel maximum − 8. A
    track's floor is the highest of its windows' floors."""

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return super().forward(waveform).amax(dim=(1, 2)) - DYNAMIC_RANGE
