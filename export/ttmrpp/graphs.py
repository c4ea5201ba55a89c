"""TTMR++'s inference graphs as torch modules, which ``export.onnx_export`` exports: the two
towers, and the floor graph that gives each window's log-mel floor."""

from __future__ import annotations

import torch
from torch import nn

from export.text_tower import roberta_position_ids
from export.ttmrpp.audio_tower import inference_copy
from export.ttmrpp.frontend import GraphLogMel, WindowFloor
from export.ttmrpp.reference import TTMRpp


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


def floor_graph(model: TTMRpp) -> nn.Module:
    """``waveform [B, N]`` → ``floor [B]`` (``WindowFloor``): the audio graph's frontend
    alone, a few percent of its time."""
    return WindowFloor(model.hp)
