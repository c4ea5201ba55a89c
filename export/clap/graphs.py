"""CLAP's two inference graphs as torch modules, exported like TTMR++'s."""

from __future__ import annotations

import copy
from pathlib import Path

import onnx
import torch
from torch import nn

from export.clap.frontend import ClapFrontend
from export.clap.reference import ClapReference
from export.onnx_export import TEXT_INPUTS, export_onnx
from export.text_tower import roberta_position_ids

AUDIO_INPUTS = ("waveform",)


class AudioGraph(nn.Module):
    """``waveform [B, N]`` float32 at 48 kHz → ``(joint, encoder)``; rows are independent."""

    def __init__(self, reference: ClapReference):
        super().__init__()
        self.frontend = ClapFrontend(reference)
        self.encoder = copy.deepcopy(reference.model.audio_model.audio_encoder).eval()
        self.encoder.batch_norm = nn.Identity()  # folded into the frontend
        self.projection = reference.model.audio_projection

    def forward(self, waveform: torch.Tensor):
        encoder = self.encoder(input_features=self.frontend(waveform)).pooler_output
        return self.projection(encoder), encoder


class TextGraph(nn.Module):
    """``(input_ids, attention_mask)`` int64 ``[B, L]`` → ``(joint, encoder)``."""

    def __init__(self, reference: ClapReference):
        super().__init__()
        # Registered so that export finds their parameters; the reference computes.
        self.text_model = reference.model.text_model
        self.projection = reference.model.text_projection
        self.reference = reference

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        positions = roberta_position_ids(input_ids, self.text_model.config.pad_token_id)
        return self.reference.text_encode_ids(input_ids, attention_mask, positions)


def export_audio(reference: ClapReference, path: Path) -> onnx.ModelProto:
    batch = torch.export.Dim("batch", min=1, max=4096)
    example = (torch.randn(2, reference.window_samples) * 0.1,)
    return export_onnx(AudioGraph(reference), example, AUDIO_INPUTS, {"waveform": {0: batch}}, path)


def export_text(reference: ClapReference, path: Path) -> onnx.ModelProto:
    batch = torch.export.Dim("batch", min=1, max=4096)
    length = torch.export.Dim("length", min=1, max=reference.max_length)
    texts = ["an example sentence", "a second, longer example sentence here"]
    tokens = reference.tokenizer(texts, padding="longest", return_tensors="pt")
    example = (tokens["input_ids"], tokens["attention_mask"])
    shapes = {"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}}
    return export_onnx(TextGraph(reference), example, TEXT_INPUTS, shapes, path)
