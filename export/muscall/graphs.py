"""MusCALL's two inference graphs as torch modules, which ``export.onnx_export`` exports."""

from __future__ import annotations

import torch
from torch import nn

from export.muscall.frontend import GraphLogMel
from export.muscall.reference import MusCALL
from export.ttmrpp.audio_tower import inference_copy


class AudioGraph(nn.Module):
    """``waveform [B, window_samples]`` float32 at the model's rate → ``(joint, encoder)``;
    rows are independent (the 100-dB clamp is per row). BatchNorm is folded."""

    def __init__(self, model: MusCALL):
        super().__init__()
        self.frontend = GraphLogMel(model.audio_backbone.spec, model.config.audio)
        self.encoder = inference_copy(model.audio_backbone)
        self.encoder.spec = None  # the frontend above replaces it
        self.projection = model.audio_projection

    def forward(self, waveform: torch.Tensor):
        encoder = self.encoder(self.frontend(waveform))
        return self.projection(encoder), encoder


class TextGraph(nn.Module):
    """``(input_ids, attention_mask)`` int64 ``[B, L]`` → ``(joint, encoder)``. The mask is
    taken, as every family's text graph takes it, and ignored, as MusCALL ignores it."""

    def __init__(self, model: MusCALL):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        return self.model.text_encode_ids(input_ids, attention_mask)
