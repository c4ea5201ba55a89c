"""MusCALL's two inference graphs as torch modules, exported like the other families'."""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
from torch import nn

from export.muscall.frontend import GraphLogMel
from export.muscall.reference import MusCALL
from export.onnx_export import TEXT_INPUTS, export_onnx
from export.ttmrpp.audio_tower import inference_copy

AUDIO_INPUTS = ("waveform",)


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


def export_audio(model: MusCALL, path: Path) -> onnx.ModelProto:
    batch = torch.export.Dim("batch", min=1, max=4096)
    example = (torch.randn(2, model.config.audio.window_samples) * 0.1,)
    return export_onnx(AudioGraph(model), example, AUDIO_INPUTS, {"waveform": {0: batch}}, path)


def export_text(model: MusCALL, path: Path) -> onnx.ModelProto:
    batch = torch.export.Dim("batch", min=1, max=4096)
    length = torch.export.Dim("length", min=1, max=model.max_length)
    tokens = model.tokenize(["an example sentence", "a second, longer example sentence here"])
    example = (tokens["input_ids"][:, :12], tokens["attention_mask"][:, :12])
    shapes = {"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}}
    return export_onnx(TextGraph(model), example, TEXT_INPUTS, shapes, path)
