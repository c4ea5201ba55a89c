"""TTMR++'s inference graphs as torch modules, and their export to checked ONNX files: the
two towers, and the floor graph that gives each window's log-mel floor."""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
from torch import nn

from export.onnx_export import TEXT_INPUTS, export_onnx
from export.text_tower import roberta_position_ids
from export.ttmrpp.audio_tower import inference_copy
from export.ttmrpp.frontend import GraphLogMel, WindowFloor
from export.ttmrpp.reference import TTMRpp

AUDIO_INPUTS = ("waveform", "floor")
FLOOR_OUTPUTS = ("floor",)


class AudioGraph(nn.Module):
    """``(waveform [B, N] float32, floor [B] float32)`` → ``(joint, encoder)``.

    ``floor`` is each row's log-mel floor: its track's, the highest of the floor graph's
    answers over the track's windows, as the reference floors one track's windows at one
    level. Rows are independent. BatchNorm is folded.
    """

    def __init__(self, model: TTMRpp):
        super().__init__()
        self.frontend = GraphLogMel(model.hp)
        self.encoder = inference_copy(model.audio_encoder)
        self.projector = model.audio_projector

    def forward(self, waveform: torch.Tensor, floor: torch.Tensor):
        encoder = self.encoder(self.frontend(waveform, floor))
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
    example = (torch.randn(2, model.hp.window_samples), torch.tensor([-6.0, -7.0]))
    shapes = {"waveform": {0: batch}, "floor": {0: batch}}
    return export_onnx(AudioGraph(model), example, AUDIO_INPUTS, shapes, path)


def export_floor(model: TTMRpp, path: Path) -> onnx.ModelProto:
    """``waveform [B, N]`` → ``floor [B]`` (``WindowFloor``): the audio graph's frontend
    alone, a few percent of its time."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    example = (torch.randn(2, model.hp.window_samples),)
    module = WindowFloor(model.hp)
    return export_onnx(
        module, example, ("waveform",), {"waveform": {0: batch}}, path, FLOOR_OUTPUTS
    )


def export_text(model: TTMRpp, path: Path) -> onnx.ModelProto:
    batch = torch.export.Dim("batch", min=1, max=4096)
    length = torch.export.Dim("length", min=1, max=model.hp.max_length)
    tokens = model.tokenize(["an example sentence", "a second, longer example sentence here"])
    example = (tokens["input_ids"], tokens["attention_mask"])
    shapes = {"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}}
    return export_onnx(TextGraph(model), example, TEXT_INPUTS, shapes, path)
