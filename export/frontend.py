"""The log-mel frontend of TTMR++, twice: as the reference computes it and as the graph does.

``ReferenceLogMel`` follows SPEC.md literally (complex ``torch.stft``; the floor uses the
maximum over everything it is given). ``GraphLogMel`` computes the same numbers with
operators TensorRT parses (no complex STFT) and takes the floor per track, so a track's
result never depends on what else shares the batch.
"""

from __future__ import annotations

import librosa
import numpy as np
import torch
from torch import nn

from export.hparams import HParams

LOG_FLOOR = 1e-10  # mel power below this is clamped before log10
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


def factor_pair(n: int) -> tuple[int, int]:
    """``n = a * b`` with ``a`` the largest factor not above ``sqrt(n)`` (32 × 32 for 1024)."""
    a = max(d for d in range(1, int(n**0.5) + 1) if n % d == 0)
    return a, n // a


def dft_matrices(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary parts of ``exp(-2πi jk / size)``, float64."""
    angle = 2.0 * np.pi * np.outer(np.arange(size), np.arange(size)) / size
    return np.cos(angle), -np.sin(angle)


class StftPower(nn.Module):
    """``|STFT|²`` of ``[B, N]`` waveforms (periodic Hann, centred, reflect padding) with
    operators TensorRT parses; the exportable frontends of every family build on it.

    The STFT is a Cooley–Tukey DFT in two MatMul stages (32 × 32 for ``n_fft = 1024``)
    computed in float64: a float32 DFT loses low-energy bands to cancellation, and the deep
    network downstream amplifies that. The power (all terms positive) goes on in float32.
    Only Gather, MatMul and elementwise operators are used. ``frames`` counts the frames
    computed from the first; a reference that drops trailing frames never pays for them.
    """

    def __init__(self, n_fft: int, hop: int, frames: int):
        super().__init__()
        bins = n_fft // 2 + 1
        first, second = factor_pair(n_fft)
        starts = np.arange(frames)[:, None] * hop
        self.register_buffer("frame_index", torch.from_numpy(starts + np.arange(n_fft)).flatten())
        self.frames = frames
        window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
        # n = second * n1 + n2 and k = k1 + first * k2; stage 1 sums over n1, stage 2 over n2.
        stage1_re, stage1_im = dft_matrices(first)
        twiddle = -2.0 * np.pi * np.outer(np.arange(first), np.arange(second)) / n_fft
        stage2_re, stage2_im = dft_matrices(second)
        as_buffer = {
            "window": window.reshape(first, second),
            "stage1_re": stage1_re,
            "stage1_im": stage1_im,
            "twiddle_re": np.cos(twiddle),
            "twiddle_im": np.sin(twiddle),
            "stage2_re": stage2_re,
            "stage2_im": stage2_im,
        }
        for name, value in as_buffer.items():
            self.register_buffer(name, torch.from_numpy(value.astype(np.float64)))
        self.shape = (first, second)
        self.bins = bins
        self.pad = n_fft // 2

    def power(self, waveform: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` → ``|STFT|²`` as ``[B, frames, bins]``."""
        padded = nn.functional.pad(waveform[:, None, :], (self.pad, self.pad), mode="reflect")
        flat = padded.flatten(1).index_select(1, self.frame_index)  # one Gather
        frames = flat.reshape(-1, self.frames, self.window.numel()).double()  # [B, F, n_fft]
        x = frames.reshape(*frames.shape[:2], *self.shape) * self.window  # x[n1, n2]
        part_re, part_im = self.stage1_re @ x, self.stage1_im @ x
        re = part_re * self.twiddle_re - part_im * self.twiddle_im
        im = part_re * self.twiddle_im + part_im * self.twiddle_re
        out_re = re @ self.stage2_re - im @ self.stage2_im  # [B, F, k1, k2]
        out_im = re @ self.stage2_im + im @ self.stage2_re
        power = (out_re * out_re + out_im * out_im).float()  # positive: float32 suffices now
        return power.transpose(-1, -2).reshape(*frames.shape[:2], -1)[..., : self.bins]


class GraphLogMel(StftPower):
    """The exportable TTMR++ frontend: ``(waveform [B, N], track [B])`` → ``[B, 1, n_mels,
    frames]``. Rows with equal ``track`` ids share the floor's maximum, as the windows of one
    track do in the reference; rows of other tracks never enter it.
    """

    def __init__(self, hp: HParams):
        # The reference drops the last STFT frame; never computing it saves the work.
        super().__init__(hp.n_fft, hp.hop_length, frames=hp.window_samples // hp.hop_length)
        self.register_buffer("filters", torch.from_numpy(mel_filters(hp).T.copy()))

    def forward(self, waveform: torch.Tensor, track: torch.Tensor) -> torch.Tensor:
        mel = (self.power(waveform) @ self.filters).transpose(1, 2)  # [B, n_mels, F]
        log_mel = torch.clamp(mel, min=LOG_FLOOR).log10()
        window_max = log_mel.amax(dim=(1, 2))
        same_track = track[:, None] == track[None, :]
        # Every log-mel value is >= log10(LOG_FLOOR), so that value is neutral for the max.
        track_max = torch.where(same_track, window_max[None, :], np.log10(LOG_FLOOR)).amax(dim=1)
        return scale_log_mel(log_mel, track_max[:, None, None])[:, None]
