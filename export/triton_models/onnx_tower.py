"""Triton Python backend: one exported ONNX graph (``model.onnx``) run by ONNX Runtime.

Serves both towers in repositories written with ``--backend python`` (the CPU server of
the nvidia-pytriton wheel has no ONNX Runtime backend), with the runtime's session options.
A model with a batch dimension (``text_tower``) runs the requests of one execution as one
batch: its config lets Triton group sentences of different lengths, and each input is
padded at the end to the longest with the config's ``pad_values`` (the pad id, mask 0).
One without (``audio_tower``, whose track ids are per execution) runs each on its own.
Any client may call a tower directly, so each request is checked first: dims within the
config's ``max_dims`` (Triton bounds only the batch) and finite values; and an answer with
NaN or infinite values is an error, never a result.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from runtime.errors import InputError
from runtime.session import GraphSession


def padded(values: list[np.ndarray], pad: int) -> np.ndarray:
    """``[rows, length]`` arrays of different lengths → one array, padded at the end."""
    length = max(value.shape[1] for value in values)
    return np.concatenate(
        [np.pad(v, ((0, 0), (0, length - v.shape[1])), constant_values=pad) for v in values]
    )


def error(message: str, code: int) -> pb_utils.InferenceResponse:
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        self.inputs = [tensor["name"] for tensor in config["input"]]
        self.outputs = [tensor["name"] for tensor in config["output"]]
        self.batched = config["max_batch_size"] > 0
        options = {k: json.loads(v["string_value"]) for k, v in config["parameters"].items()}
        self.pad_values = options.get("pad_values", {})
        self.max_dims = options["max_dims"]
        graph = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = GraphSession(graph, ["CPUExecutionProvider"])

    def check(self, feed: dict[str, np.ndarray]) -> None:
        """InputError naming the input (and the row) that is too large or not finite."""
        for name, value in feed.items():
            shape = value.shape[1:] if self.batched else value.shape
            for axis, (size, limit) in enumerate(zip(shape, self.max_dims[name], strict=True)):
                if size > limit:
                    what = "values per row" if self.batched or axis else "rows"
                    raise InputError(
                        f"{name}: {size} {what}, more than this server's limit of {limit}"
                    )
            if value.dtype.kind == "f":
                bad = ~np.isfinite(value.reshape(len(value), -1)).all(axis=1)
                if bad.any():
                    raise InputError(f"{name}: row {np.argmax(bad)} holds NaN or infinite values")

    def batch(self, feeds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {
            name: padded([feed[name] for feed in feeds], self.pad_values[name])
            if name in self.pad_values
            else np.concatenate([feed[name] for feed in feeds])
            for name in self.inputs
        }

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        feeds = {}
        for index, request in enumerate(requests):
            feed = {
                name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                for name in self.inputs
            }
            try:
                self.check(feed)
            except InputError as err:
                responses[index] = error(str(err), pb_utils.TritonError.INVALID_ARG)
                continue
            feeds[index] = feed
        groups = [list(feeds)] if self.batched else [[i] for i in feeds]
        for members in groups:
            if not members:
                continue
            try:
                results = self.session.run(self.outputs, self.batch([feeds[i] for i in members]))
                if not all(np.isfinite(result).all() for result in results):
                    raise ArithmeticError("the model produced NaN or infinite values")
            except Exception as err:  # ONNX Runtime rejects what the config could not
                for i in members:
                    responses[i] = error(
                        f"{type(err).__name__}: {err}", pb_utils.TritonError.INTERNAL
                    )
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
