"""Triton Python backend (BLS): one track's mono waveform per request row → that track's
embedding.

Rows are preprocessed by the runtime's own code (``runtime.audio.reading.load_track`` with the
manifest's preprocessing: resample to the model's rate with soxr HQ, the family's
normalisation and padding, windows), and embedded through ``runtime.batching``
(``window_rows``, ``means``), so the server computes what ``runtime.Embedder`` does. The
windows of every track of a dynamic batch, whatever their request, go to ``audio_tower`` in
calls of ``max_batch_windows`` rows (its preferred batch size; Triton may merge the last,
shorter calls of several executions). Where the family floors the log-mel per track
(TTMR++), the ``floor`` model gives each window's floor first, in calls of the same size,
and every row carries its track's. Rows never affect each other, so a request's result does
not depend on its batch-mates. A bad row fails its own request; a failed tower call fails
the requests whose windows it held. Limits are checked before any work, none trusting the
client's sample rate: the request's samples (all rows), then each row's rate
(runtime.audio.reading's range), then its seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from runtime.audio.reading import Track, check_size, load_track
from runtime.batching import Batch, means, track_floors, window_rows
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
        self.floor = options.get("floor")  # the floor model's name, for families with one
        self.max_seconds = float(options["max_audio_seconds"])
        self.max_windows = int(options["max_batch_windows"])
        self.max_samples = int(options["max_request_samples"])
        self.outputs = [tensor["name"] for tensor in config["output"]]
        self.widths = [tensor["dims"][0] for tensor in config["output"]]
        folder = Path(args["model_repository"]) / args["model_version"]
        self.steps = read_manifest(folder).audio.preprocessing

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

    def caller(self, model: str, outputs: list[str], owner: list[int], failed: dict):
        """A ``runtime.batching`` run function calling ``model``; a failed call is recorded
        in ``failed`` for the requests that own its rows, and its rows are given up."""

        def run(batch: Batch) -> list[np.ndarray] | None:
            # One value per row (the floor) is [rows, 1] in Triton's configs.
            tensors = [
                pb_utils.Tensor(name, value if value.ndim > 1 else value[:, None])
                for name, value in batch.feed.items()
            ]
            request = pb_utils.InferenceRequest(
                model_name=model, requested_output_names=outputs, inputs=tensors
            )
            response = request.exec()
            if response.has_error():
                for track in set(batch.owners.tolist()):
                    failed.setdefault(owner[track], f"{model}: {response.error().message()}")
                return None
            return [pb_utils.get_output_tensor_by_name(response, n).as_numpy() for n in outputs]

        return run

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
        failed: dict[int, str] = {}
        floors = None
        if self.floor:
            run = self.caller(self.floor, ["floor"], owner, failed)
            floors = track_floors(tracks, self.max_windows, run)
            # A request whose floor call failed is answered with that error; its tracks
            # (floor NaN) must not reach a tower call that other requests share.
            kept = [i for i, request in enumerate(owner) if request not in failed]
            tracks, owner = [tracks[i] for i in kept], [owner[i] for i in kept]
            floors = floors[kept]
        run = self.caller(self.tower, self.outputs, owner, failed)
        window = window_rows(tracks, self.max_windows, run, self.widths, floors)
        rows = [means(output, tracks) for output in window]
        owners = np.array(owner, dtype=np.int64)
        for index, message in failed.items():
            responses[index] = pb_utils.InferenceResponse(error=pb_utils.TritonError(message))
        for index in range(len(requests)):
            if responses[index] is None:
                mine = owners == index
                tensors = [
                    pb_utils.Tensor(name, output[mine])
                    for name, output in zip(self.outputs, rows, strict=True)
                ]
                responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
        return responses
