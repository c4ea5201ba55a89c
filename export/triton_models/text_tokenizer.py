"""Triton Python backend: UTF-8 sentences → ``input_ids`` / ``attention_mask`` for text_tower.

Tokenizes with the runtime's own ``runtime.text.TextBatcher`` (the exported
``tokenizer.json``, truncation built in, padding with the model's pad id). All requests of
one execution are padded to the same length, so text_tower can run them together even on
Triton's ONNX Runtime backend, whose dynamic batcher only groups equal shapes. A row that
is not UTF-8 fails its own request.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from runtime.errors import InputError
from runtime.manifest import read_manifest
from runtime.text import TextBatcher


def decode(row: int, value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"item {row}: the text is not valid UTF-8 ({err})") from None


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        folder = Path(args["model_repository"]) / args["model_version"]
        self.batcher = TextBatcher.from_manifest(folder, read_manifest(folder).text)

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        texts: list[str] = []
        spans: dict[int, tuple[int, int]] = {}
        for index, request in enumerate(requests):
            raw = pb_utils.get_input_tensor_by_name(request, "text").as_numpy().reshape(-1)
            try:
                if len(raw) == 0:
                    raise InputError("the request holds no rows")
                decoded = [decode(row, value) for row, value in enumerate(raw)]
            except InputError as err:
                responses[index] = pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(str(err), pb_utils.TritonError.INVALID_ARG)
                )
                continue
            spans[index] = (len(texts), len(texts) + len(decoded))
            texts += decoded
        if texts:
            ((positions, feed),) = self.batcher.batches(texts, batch_size=len(texts))
            in_order = np.argsort(positions)  # the batcher sorts by length; undo that
            for index, (start, end) in spans.items():
                tensors = [pb_utils.Tensor(n, v[in_order[start:end]]) for n, v in feed.items()]
                responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
        return responses
