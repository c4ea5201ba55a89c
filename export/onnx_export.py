"""What exporting any family's towers shares: the opset, the tensor names every graph uses,
and ``export_onnx``, which exports a torch module to a constant-folded, checked ONNX file."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import onnx
import onnxscript.optimizer
import torch
from torch import nn

OPSET = 18
FOLD_LIMIT = 1 << 30  # elements: fold constants of any size
TEXT_INPUTS = ("input_ids", "attention_mask")
OUTPUTS = ("joint", "encoder")
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
