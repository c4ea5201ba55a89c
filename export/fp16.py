"""FP16 variants of the exported graphs, for GPUs (half the weight traffic, tensor cores).

The weights and most activations go to float16; what accuracy needs stays in float32: the
frontend (every node that computes the first convolution's input: DFT, mel, log, floor;
CLAP's runs in float64 and stays so), Softmax, LayerNormalization and the reductions of
onnxruntime's default block list. Inputs and outputs stay float32, so the runtime feeds
and reads the same arrays at either precision.

    python export/fp16.py --model-dir DIR
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import onnx
from onnx.onnx_pb import TensorProto
from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
from onnxruntime.transformers.onnx_model import OnnxModel

from export.command import run_command
from export.onnx_export import frontend_nodes
from runtime.manifest import Fp16, Manifest, read_manifest, write_manifest

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
FP16_FILES = {"audio": "audio.fp16.onnx", "text": "text.fp16.onnx"}
FLOAT32_OPS = [*DEFAULT_OP_BLOCK_LIST, "Softmax", "LayerNormalization"]


def drop_round_trips(model: onnx.ModelProto) -> None:
    """Join float32 nodes directly where the converter routed a tensor between them through
    float16 (a Cast to float16, then straight back): the round trip only loses precision,
    and in the frontend it flushes the log's 1e-10 floor to zero (a -inf log-mel)."""
    graph = model.graph
    types = {
        info.name: info.type.tensor_type.elem_type
        for info in onnx.shape_inference.infer_shapes(model).graph.value_info
    }
    types.update({value.name: value.type.tensor_type.elem_type for value in graph.input})
    producer = {out: node for node in graph.node for out in node.output}
    outputs = {value.name for value in graph.output}

    def cast_to(node: onnx.NodeProto | None, dtype: int) -> bool:
        return node is not None and node.op_type == "Cast" and node.attribute[0].i == dtype

    renamed = {}
    for node in graph.node:
        down = producer.get(node.input[0]) if node.op_type == "Cast" else None
        if cast_to(node, FLOAT) and cast_to(down, FLOAT16) and node.output[0] not in outputs:
            if types.get(down.input[0]) == FLOAT:
                renamed[node.output[0]] = down.input[0]
    for node in graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
    while True:  # a removed Cast to float32 can leave its Cast to float16 unread
        used = {name for node in graph.node for name in node.input} | outputs
        dead = [n for n in graph.node if n.op_type == "Cast" and n.output[0] not in used]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """The float16 graph, with the frontend and ``FLOAT32_OPS`` left in float32, its nodes
    put back in topological order (the converter appends its casts at the end, which ONNX's
    checker and TensorRT's parser refuse). The exporter's value_info entries for weights go
    first: the converter retypes them to float16 even for the weights it keeps in float32,
    and the contradiction stops ONNX's type inference."""
    weights = {init.name for init in model.graph.initializer}
    kept = [info for info in model.graph.value_info if info.name not in weights]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    converted = OnnxModel(
        convert_float_to_float16(
            model,
            keep_io_types=True,
            op_block_list=FLOAT32_OPS,
            node_block_list=frontend_nodes(model.graph),
        )
    )
    converted.topological_sort()
    drop_round_trips(converted.model)
    return converted.model


def write_fp16_graphs(model_dir: Path) -> Manifest:
    """Write both FP16 graphs beside the fp32 ones and record them in the manifest."""
    manifest = read_manifest(model_dir)
    for tower, name in FP16_FILES.items():
        started = time.perf_counter()
        target = model_dir / name
        onnx.save(to_fp16(onnx.load(str(model_dir / manifest.tower(tower).file))), str(target))
        onnx.checker.check_model(str(target))
        size = target.stat().st_size / 2**20
        print(f"  {target} ({size:.0f} MiB, {time.perf_counter() - started:.0f} s)", flush=True)
    fp16 = Fp16(**FP16_FILES, float32_ops=tuple(FLOAT32_OPS), float32_frontend=True)
    manifest = manifest.replace(fp16=fp16)
    write_manifest(model_dir, manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fp16.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="folder from to_onnx.py")
    args = parser.parse_args(argv)
    print(f"Writing the FP16 graphs of {args.model_dir} …", flush=True)
    return run_command("fp16.py", partial(write_fp16_graphs, args.model_dir))


if __name__ == "__main__":
    sys.exit(main())
