"""Triton Python backend: one exported ONNX graph (``model.onnx``) run by ONNX Runtime.

Serves both towers in repositories written with ``--backend python`` (the CPU server of
the nvidia-pytriton wheel has no ONNX Runtime backend), with the runtime's session options.
A model with a batch dimension runs the requests of one execution together (Triton's dynamic
batcher only groups equal shapes); one without (``audio_tower``, whose track ids are per
execution) runs each on its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from runtime.session import GraphSession


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        self.inputs = [tensor["name"] for tensor in config["input"]]
        self.outputs = [tensor["name"] for tensor in config["output"]]
        self.batched = config["max_batch_size"] > 0
        graph = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = GraphSession(graph, ["CPUExecutionProvider"])

    def execute(self, requests: list) -> list:
        feeds = [
            {
                name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                for name in self.inputs
            }
            for request in requests
        ]
        groups: dict[object, list[int]] = {}
        for index, feed in enumerate(feeds):
            key = tuple(feed[name].shape[1:] for name in self.inputs) if self.batched else index
            groups.setdefault(key, []).append(index)
        responses: list = [None] * len(requests)
        for members in groups.values():
            batch = {
                name: np.concatenate([feeds[i][name] for i in members]) for name in self.inputs
            }
            try:
                results = self.session.run(self.outputs, batch)
            except Exception as err:  # ONNX Runtime rejects what the config could not
                error = pb_utils.TritonError(f"{type(err).__name__}: {err}")
                for i in members:
                    responses[i] = pb_utils.InferenceResponse(error=error)
                continue
            ends = np.cumsum([len(feeds[i][self.inputs[0]]) for i in members])
            for i, end in zip(members, ends, strict=True):
                start = end - len(feeds[i][self.inputs[0]])
                outputs = [
                    pb_utils.Tensor(name, value[start:end])
                    for name, value in zip(self.outputs, results, strict=True)
                ]
                responses[i] = pb_utils.InferenceResponse(output_tensors=outputs)
        return responses
