"""TTMR++'s two inference graphs as torch modules, and their export to checked ONNX files."""

from __future__ import annotations

import copy
from pathlib import Path

import onnx
import torch
from torch import nn

from export.onnx_export import TEXT_INPUTS, export_onnx
from export.text_tower import roberta_position_ids
from export.ttmrpp.audio_tower import fold_batchnorm
from export.ttmrpp.frontend import GraphLogMel
from export.ttmrpp.reference import TTMRpp

AUDIO_INPUTS = ("waveform", "track")


class AudioGraph(nn.Module):
    """``(waveform [B, N] float32, track [B] int64)`` → ``(joint, encoder)``.

    ``track`` says which rows are windows of the same track: they share the log-mel
    floor, exactly as the reference's one-track batch does. BatchNorm is folded.
    """

    def __init__(self, model: TTMRpp):
        super().__init__()
        self.frontend = GraphLogMel(model.hp)
        self.encoder = copy.deepcopy(model.audio_encoder).eval()
        fold_batchnorm(self.encoder)
        self.projector = model.audio_projector

    def forward(self, waveform: torch.Tensor, track: torch.Tensor):
        encoder = self.encoder(self.frontend(waveform, track))
        return self.projector(encoder), encoder


class TextGraph(nn.Module):
    """``(input_ids, attention_mask)`` int64 ``[B, L]`` → ``(joint, encoder)``."""

    def __init__(self, model: TTMRpp):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        positions = roberta_position_ids(input_ids, self.model.text_encoder.config.pad_token_id)
        return self.model.text_encode_ids(input_ids, attention_mask, positions)


def export_audio(model: TTMRpp, path: Path) -> onnx.ModelProto:
    batch = torch.export.Dim("batch", min=1, max=4096)
    example = (torch.randn(2, model.hp.window_samples), torch.tensor([0, 1]))
    shapes = {"waveform": {0: batch}, "track": {0: batch}}
    return export_onnx(AudioGraph(model), example, AUDIO_INPUTS, shapes, path)


def export_text(model: TTMRpp, path: Path) -> onnx.ModelProto:
    batch = torch.export.Dim("batch", min=1, max=4096)
    length = torch.export.Dim("length", min=1, max=model.hp.max_length)
    tokens = model.tokenize(["an example sentence", "a second, longer example sentence here"])
    example = (tokens["input_ids"], tokens["attention_mask"])
    shapes = {"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}}
    return export_onnx(TextGraph(model), example, TEXT_INPUTS, shapes, path)
