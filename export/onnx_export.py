"""What exporting any family's towers shares: the opset, the tensor names every graph uses,
each graph's example input and dynamic batch (and token length), and ``export_onnx``, which
exports a torch module to a constant-folded, checked ONNX file. A family gives only its
modules (``Family.audio_graph``, ``text_graph``, ``floor_graph``) and its settings."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import onnx
import onnxscript.optimizer
import torch
from torch import nn

if TYPE_CHECKING:
    from export.families import Family, Reference

OPSET = 18
FOLD_LIMIT = 1 << 30  # elements: fold constants of any size
TEXT_INPUTS = ("input_ids", "attention_mask")
OUTPUTS = ("joint", "encoder")
FLOOR_OUTPUTS = ("floor",)
MAX_BATCH = 4096  # rows per call the graphs accept
# Tracing needs one example of each input; its values never reach the graph.
EXAMPLE_TEXTS = ["an example sentence", "a second, longer example sentence here"]
EXAMPLE_FLOORS = (-6.0, -7.0)
# At every export, torch.onnx registers torchvision's detection ops (nms, roi_align, …) and,
# without torchvision, logs a warning for each; none of them is in these graphs.
REGISTRY_LOG = logging.getLogger("torch.onnx._internal.exporter._registration")
TORCHVISION_NOTE = "torchvision is not installed"


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
    output_names: tuple[str, ...] = OUTPUTS,
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
            output_names=list(output_names),
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


def graph_names(family: Family) -> tuple[str, ...]:
    """The graphs ``family`` exports: both towers, and ``floor`` where it has one."""
    return ("audio", "text") + (("floor",) if family.floor_graph else ())


def example_tokens(reference: Reference) -> tuple[torch.Tensor, torch.Tensor]:
    """Two example texts as the family tokenizes them, cut after the longer's last token
    (so that a family padding every text to its ``max_length`` still traces a shorter one)."""
    tokens = reference.tokenize(EXAMPLE_TEXTS)
    length = int(tokens["attention_mask"].sum(dim=1).max())
    return tokens["input_ids"][:, :length], tokens["attention_mask"][:, :length]


def export_graph(
    name: str, family: Family, reference: Reference, settings: dict, path: Path
) -> onnx.ModelProto:
    """Write ``family``'s graph ``name`` (``graph_names``) of ``reference`` to ``path``:
    rows are a dynamic batch of 1 to ``MAX_BATCH``, texts a dynamic length of 1 to the
    settings' ``max_length``. The audio graph takes ``floor`` where the family has a floor
    graph (``export.families``)."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    if name == "text":
        length = torch.export.Dim("length", min=1, max=settings["text"]["max_length"])
        shapes = {tensor: {0: batch, 1: length} for tensor in TEXT_INPUTS}
        module = family.text_graph(reference)
        return export_onnx(module, example_tokens(reference), TEXT_INPUTS, shapes, path)
    waveform = torch.randn(len(EXAMPLE_FLOORS), settings["audio"]["window_samples"]) * 0.1
    if name == "floor":
        module = family.floor_graph(reference)
        shapes = {"waveform": {0: batch}}
        return export_onnx(module, (waveform,), ("waveform",), shapes, path, FLOOR_OUTPUTS)
    if name != "audio":
        raise ValueError(f"no graph {name!r}: a family exports {graph_names(family)}")
    module = family.audio_graph(reference)
    if family.floor_graph:
        example, inputs = (waveform, torch.tensor(EXAMPLE_FLOORS)), ("waveform", "floor")
    else:
        example, inputs = (waveform,), ("waveform",)
    return export_onnx(module, example, inputs, {tensor: {0: batch} for tensor in inputs}, path)
