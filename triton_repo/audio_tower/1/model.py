"""Triton Python backend: one exported ONNX graph (``model.onnx``) run by ONNX Runtime.

Serves both towers in repositories written with ``--backend python`` (the CPU server of
the nvidia-pytriton wheel has no ONNX Runtime backend), with the runtime's session options.
A model with a batch dimension (``text_tower``) runs the requests of one execution as one
batch: its config lets Triton group sentences of different lengths, and each input is
padded at the end to the longest with the config's ``pad_values`` (the pad id, mask 0).
One without (``audio_tower``, whose track ids are per execution) runs each on its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from runtime.session import GraphSession


def padded(values: list[np.ndarray], pad: int) -> np.ndarray:
    """``[rows, length]`` arrays of different lengths → one array, padded at the end."""
    length = max(value.shape[1] for value in values)
    return np.concatenate(
        [np.pad(v, ((0, 0), (0, length - v.shape[1])), constant_values=pad) for v in values]
    )


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        self.inputs = [tensor["name"] for tensor in config["input"]]
        self.outputs = [tensor["name"] for tensor in config["output"]]
        self.batched = config["max_batch_size"] > 0
        pad_values = config.get("parameters", {}).get("pad_values")
        self.pad_values = json.loads(pad_values["string_value"]) if pad_values else {}
        graph = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = GraphSession(graph, ["CPUExecutionProvider"])

    def batch(self, feeds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {
            name: padded([feed[name] for feed in feeds], self.pad_values[name])
            if name in self.pad_values
            else np.concatenate([feed[name] for feed in feeds])
            for name in self.inputs
        }

    def execute(self, requests: list) -> list:
        feeds = [
            {
                name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                for name in self.inputs
            }
            for request in requests
        ]
        groups = [list(range(len(feeds)))] if self.batched else [[i] for i in range(len(feeds))]
        responses: list = [None] * len(requests)
        for members in groups:
            try:
                results = self.session.run(self.outputs, self.batch([feeds[i] for i in members]))
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
