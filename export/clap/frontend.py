"""CLAP's log-mel frontend inside the graph: what ``ClapFeatureExtractor`` computes for a
10-s window, then the audio encoder's first steps (per-mel BatchNorm, bicubic stretch of
the time axis to the Swin input width) as plain arithmetic.

The BatchNorm becomes one multiply-add per mel bin (folded in float64); the bicubic
stretch, a linear map of fixed size, becomes one MatMul whose weights are the reference's
own interpolation applied to the identity. No Resize, STFT or BatchNormalization operator
is left for TensorRT to parse.
"""

from __future__ import annotations

import torch
from torch import nn

from export.clap.reference import ClapReference
from export.frontend import LOG_FLOOR, MelPower


def stretch_matrix(frames: int, width: int) -> torch.Tensor:
    """``[width, frames]``: the bicubic (align_corners) resize of ``ClapAudioEncoder`` as a
    matrix, float64; columns are the resized unit impulses."""
    if frames == width:
        return torch.eye(width, dtype=torch.float64)
    impulses = torch.eye(frames, dtype=torch.float64)[None, None]  # time × (one column each)
    resized = nn.functional.interpolate(
        impulses, (width, frames), mode="bicubic", align_corners=True
    )
    return resized[0, 0]


class ClapFrontend(nn.Module):
    """``waveform [B, N]`` → the normalised, stretched log-mel ``[B, 1, width, n_mels]`` that
    ``ClapAudioEncoder`` reshapes into its square input (its own BatchNorm must be removed)."""

    def __init__(self, reference: ClapReference):
        super().__init__()
        features = reference.features
        frames = 1 + reference.window_samples // features.hop_length  # centred frames
        # float64 DFT stages: the feature extractor computes in float64, and its dB values
        # are compared to 1e-4 dB, finer than float32 rounding of the quietest bands allows.
        self.mel = MelPower(
            features.fft_window_size,
            features.hop_length,
            frames,
            reference.mel_filters.T,
            dtype=torch.float64,
        )
        encoder = reference.model.audio_model.audio_encoder
        norm = encoder.batch_norm
        scale = norm.weight.double() / torch.sqrt(norm.running_var.double() + norm.eps)
        self.register_buffer("scale", scale.float())
        self.register_buffer("shift", (norm.bias.double() - norm.running_mean * scale).float())
        width = encoder.spec_size * encoder.freq_ratio
        if frames > width or features.feature_size * encoder.freq_ratio != encoder.spec_size:
            raise ValueError(
                f"{frames} frames × {features.feature_size} mels do not fit the audio encoder's "
                f"{encoder.spec_size}² input"
            )
        self.register_buffer("stretch", stretch_matrix(frames, width).float())

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` → ``[B, 1, frames, n_mels]`` in dB, as ``ClapFeatureExtractor``."""
        mel = self.mel(waveform).transpose(1, 2)
        return (10.0 * torch.clamp(mel, min=LOG_FLOOR).log10())[:, None]

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.stretch @ (self.log_mel(waveform) * self.scale + self.shift)
