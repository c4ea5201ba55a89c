"""Triton Python backend (BLS): one track's mono waveform per row → that track's embedding.

Rows are preprocessed by the runtime's own code (``runtime.audio.load_track`` with the
manifest's preprocessing: resample to the model's rate with soxr HQ, the family's
normalisation and padding, windows), so the server computes what ``runtime.Embedder``
does. Whole tracks of a dynamic batch are packed into ``audio_tower`` calls
(``runtime.embedder.pack``); where the tower takes track ids (TTMR++) they are 0..k-1 per
call: the windows of a track share their log-mel floor and no two tracks ever do. A track's
embedding is the mean over its windows. A bad row fails its own request, nothing else.
Limits are checked before any work, none trusting the client's sample rate: the request's
samples (all rows), then each row's rate (runtime.audio's range), then its seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from runtime.audio import Track, check_size, load_track
from runtime.embedder import pack, tower_feeds
from runtime.errors import InputError
from runtime.manifest import read_manifest


def invalid(message: str) -> pb_utils.InferenceResponse:
    return pb_utils.InferenceResponse(
        error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
    )


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        options = {key: value["string_value"] for key, value in config["parameters"].items()}
        self.tower = options["tower"]
        self.max_seconds = float(options["max_audio_seconds"])
        self.max_windows = int(options["max_batch_windows"])
        self.max_samples = int(options["max_request_samples"])
        self.outputs = [tensor["name"] for tensor in config["output"]]
        folder = Path(args["model_repository"]) / args["model_version"]
        audio = read_manifest(folder).audio
        self.steps = audio.preprocessing
        self.per_track = "track" in audio.input_names

    def load(self, request) -> list[Track]:
        """The request's rows as windowed tracks; InputError names the first bad row."""
        waveforms = pb_utils.get_input_tensor_by_name(request, "waveform").as_numpy()
        rates = pb_utils.get_input_tensor_by_name(request, "sample_rate").as_numpy()[:, 0]
        if len(waveforms) == 0:
            raise InputError("the request holds no rows")
        if waveforms.size > self.max_samples:
            raise InputError(
                f"the request holds {waveforms.shape[0]} rows × {waveforms.shape[1]} samples, "
                f"more than this server's limit of {self.max_samples} samples per request"
            )
        tracks = []
        for row, (samples, rate) in enumerate(zip(waveforms, rates, strict=True)):
            check_size(row, samples, len(samples), 1, rate)
            if len(samples) / rate > self.max_seconds:
                raise InputError(
                    f"item {row}: {len(samples)} samples at {rate} Hz are more than this "
                    f"server's limit of {self.max_seconds:g} s of audio"
                )
            try:
                tracks.append(load_track(row, samples, int(rate), self.steps))
            except InputError:
                raise
            except ValueError as err:  # e.g. a huge rate resampling a short row to nothing
                raise InputError(f"item {row}: {err}") from err
        return tracks

    def run_tower(self, windows: np.ndarray, ids: np.ndarray) -> list[np.ndarray]:
        answers = []
        for feed in tower_feeds(windows, ids, self.per_track, self.max_windows):
            request = pb_utils.InferenceRequest(
                model_name=self.tower,
                requested_output_names=self.outputs,
                inputs=[pb_utils.Tensor(name, value) for name, value in feed.items()],
            )
            response = request.exec()
            if response.has_error():
                raise pb_utils.TritonModelException(response.error().message())
            answers.append(
                [pb_utils.get_output_tensor_by_name(response, n).as_numpy() for n in self.outputs]
            )
        return [np.concatenate(parts) for parts in zip(*answers, strict=True)]

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        tracks: list[Track] = []
        owner: list[int] = []  # the request of each track
        for index, request in enumerate(requests):
            try:
                loaded = self.load(request)
            except InputError as err:
                responses[index] = invalid(str(err))
                continue
            tracks += loaded
            owner += [index] * len(loaded)
        rows = [[np.empty(0)] * len(tracks) for _ in self.outputs]
        for group in pack(tracks, self.max_windows):
            windows = np.concatenate([tracks[i].windows for i in group])
            ids = np.repeat(np.arange(len(group)), [len(tracks[i].windows) for i in group])
            try:
                results = self.run_tower(windows, ids)
            except pb_utils.TritonModelException as err:
                for i in group:
                    responses[owner[i]] = pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(f"{self.tower}: {err}")
                    )
                continue
            for position, i in enumerate(group):
                for output, result in zip(rows, results, strict=True):
                    output[i] = result[ids == position].mean(axis=0)
        owner_array = np.array(owner, dtype=np.int64)
        for index in range(len(requests)):
            if responses[index] is None:
                mine = np.flatnonzero(owner_array == index)
                tensors = [
                    pb_utils.Tensor(name, np.stack([output[i] for i in mine]))
                    for name, output in zip(self.outputs, rows, strict=True)
                ]
                responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
        return responses
