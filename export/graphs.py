"""The two inference graphs as torch modules, and their export to checked ONNX files."""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import onnx
import onnxscript.optimizer
import torch
from torch import nn

from export.audio_tower import fold_batchnorm
from export.frontend import GraphLogMel
from export.reference import TTMRpp

OPSET = 18
FOLD_LIMIT = 1 << 30  # elements: fold constants of any size
AUDIO_INPUTS = ("waveform", "track")
TEXT_INPUTS = ("input_ids", "attention_mask")
OUTPUTS = ("joint", "encoder")
# At every export, torch.onnx registers torchvision's detection ops (nms, roi_align, …) and,
# without torchvision, logs a warning for each; none of them is in these graphs.
REGISTRY_LOG = logging.getLogger("torch.onnx._internal.exporter._registration")
TORCHVISION_NOTE = "torchvision is not installed"


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


def roberta_position_ids(input_ids: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """RoBERTa's position ids (the pad id, plus the count of non-pad tokens so far; pads
    keep the pad id), counted in float32: TensorRT's ONNX CumSum is documented for float
    types only, and float32 counts exactly up to 2^24 tokens."""
    real = (input_ids != pad_token_id).float()
    return (torch.cumsum(real, dim=1) * real).long() + pad_token_id


class TextGraph(nn.Module):
    """``(input_ids, attention_mask)`` int64 ``[B, L]`` → ``(joint, encoder)``."""

    def __init__(self, model: TTMRpp):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        positions = roberta_position_ids(input_ids, self.model.text_encoder.config.pad_token_id)
        return self.model.text_encode_ids(input_ids, attention_mask, positions)


def frontend_nodes(graph: onnx.GraphProto) -> list[str]:
    """Names of every node that the graph's first convolution reads from: the frontend
    (DFT, mel, log and, for TTMR++, the floor) of either family's audio graph; none in a
    graph without convolutions (a text graph)."""
    first = next((node for node in graph.node if node.op_type == "Conv"), None)
    if first is None:
        return []
    producer = {out: node for node in graph.node for out in node.output}
    names, pending = set(), [first.input[0]]
    while pending:
        node = producer.get(pending.pop())
        if node is not None and node.name not in names:
            names.add(node.name)
            pending.extend(node.input)
    return sorted(names)


def not_about_torchvision(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(TORCHVISION_NOTE)


@contextlib.contextmanager
def torchvision_notes_dropped() -> Iterator[None]:
    """Keep the exporter's notes on missing torchvision ops, which we never use, off stderr;
    its other messages still show."""
    REGISTRY_LOG.addFilter(not_about_torchvision)
    try:
        yield
    finally:
        REGISTRY_LOG.removeFilter(not_about_torchvision)


def export_onnx(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    input_names: tuple[str, ...],
    dynamic_shapes: dict,
    path: Path,
) -> onnx.ModelProto:
    """Export with the dynamo exporter, fold every constant subgraph, then check the file."""
    with (
        warnings.catch_warnings(),
        torchvision_notes_dropped(),
        torch.inference_mode(False),
        torch.no_grad(),
    ):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module.eval(),
            example,
            input_names=list(input_names),
            output_names=list(OUTPUTS),
            dynamic_shapes=dynamic_shapes,
            opset_version=OPSET,
            dynamo=True,
            optimize=False,
            verbose=False,
        )
    # The default size limits leave ops on large constants (the frame index) unfolded.
    onnxscript.optimizer.optimize(
        program.model, input_size_limit=FOLD_LIMIT, output_size_limit=FOLD_LIMIT
    )
    program.save(str(path), external_data=False)
    onnx.checker.check_model(str(path), full_check=True)
    graph = onnx.load(str(path))
    batchnorms = [n.name for n in graph.graph.node if n.op_type == "BatchNormalization"]
    if batchnorms:
        raise RuntimeError(f"{path}: BatchNormalization left in the graph: {batchnorms}")
    return graph


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
