"""Triton Python backend: one exported ONNX graph (``model.onnx``) run by ONNX Runtime, or
by OpenVINO at the config's ``precision`` where its ``engine`` parameter says so.

Serves every tower (``audio_tower``, ``audio_floor``, ``text_tower``) in repositories
written with ``--backend python`` (the CPU server of the nvidia-pytriton wheel has no ONNX
Runtime backend), with the runtime's session options. The requests of one execution run as
one batch (their rows are independent): ``text_tower``'s config lets Triton group sentences
of different lengths, and each input is padded at the end to the longest with the config's
``pad_values`` (the pad id, mask 0). An input of one value per row is ``[rows, 1]`` in
Triton and ``[rows]`` in the graph (the config's ``reshape``). Any client may call a tower
directly, so each request is checked first: dims within the config's ``max_dims`` (Triton
bounds only the batch) and finite values; and an answer with NaN or infinite values is an
error, never a result.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from runtime.engines.onnxruntime import OnnxRuntimeSession
from runtime.engines.openvino import OpenVINOSession
from runtime.errors import InputError


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
        self.shapes = {
            tensor["name"]: tensor["reshape"].get("shape", [])
            for tensor in config["input"]
            if "reshape" in tensor
        }
        options = {k: json.loads(v["string_value"]) for k, v in config["parameters"].items()}
        self.pad_values = options.get("pad_values", {})
        self.max_dims = options["max_dims"]
        graph = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        if options.get("engine", "onnxruntime") == "openvino":
            self.session = OpenVINOSession(graph, options["precision"])
        else:
            self.session = OnnxRuntimeSession(graph, ["CPUExecutionProvider"])

    def check(self, feed: dict[str, np.ndarray]) -> None:
        """InputError naming the input (and the row) that is too large or not finite."""
        for name, value in feed.items():
            for size, limit in zip(value.shape[1:], self.max_dims[name], strict=True):
                if size > limit:
                    raise InputError(
                        f"{name}: {size} values per row, more than this server's limit of {limit}"
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
            for name, shape in self.shapes.items():
                feed[name] = feed[name].reshape(len(feed[name]), *shape)
            try:
                self.check(feed)
            except InputError as err:
                responses[index] = error(str(err), pb_utils.TritonError.INVALID_ARG)
                continue
            feeds[index] = feed
        for index, response in self.answer(feeds).items():
            responses[index] = response
        return responses

    def answer(self, feeds: dict[int, dict[str, np.ndarray]]) -> dict[int, object]:
        """Every checked request's answer, from one run over all their rows."""
        if not feeds:
            return {}
        try:
            results = self.session.run(self.outputs, self.batch(list(feeds.values())))
            if not all(np.isfinite(result).all() for result in results):
                raise ArithmeticError("the model produced NaN or infinite values")
        except Exception as err:  # ONNX Runtime rejects what the config could not
            message = f"{type(err).__name__}: {err}"
            return {index: error(message, pb_utils.TritonError.INTERNAL) for index in feeds}
        answers, start = {}, 0
        for index, feed in feeds.items():
            end = start + len(feed[self.inputs[0]])
            outputs = [
                pb_utils.Tensor(name, value[start:end])
                for name, value in zip(self.outputs, results, strict=True)
            ]
            answers[index] = pb_utils.InferenceResponse(output_tensors=outputs)
            start = end
        return answers
