"""CLAP's two inference graphs as torch modules, which ``export.onnx_export`` exports."""

from __future__ import annotations

import copy

import torch
from torch import nn

from export.clap.frontend import ClapFrontend
from export.clap.reference import ClapReference
from export.text_tower import roberta_position_ids


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
