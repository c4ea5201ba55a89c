"""The backends that run a model folder's graphs, each behind the one session interface
``Session``: ``onnxruntime`` (``OnnxRuntimeSession``: CPU, CUDA), ``openvino``
(``OpenVINOSession``: CPU, bf16 and int8 on the units for them) and ``tensorrt``
(``TensorRTSession``: the engines ``export/to_tensorrt.py`` builds; "engine" means those
only). ``choice`` picks the backend and precision for a folder (``Choice``); ``folder`` opens
the sessions an ``Embedder`` needs (``FolderSessions``, with ``Tuning``, how a backend runs
them); ``cpu`` says what this processor has units for.

This module holds only the interface, so a backend's module imports it without the others."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Session(Protocol):
    """One graph (or TensorRT engine) loaded by a backend.

    ``run(names, feed)``: the outputs ``names`` for the inputs ``feed``, as float32 numpy
    arrays (onnxruntime's ``InferenceSession.run`` call). ``providers``: what runs it, e.g.
    ``["CPUExecutionProvider"]``, ``["OpenVINO CPU (inference precision f32)"]``,
    ``["TensorRT"]``. ``close()``: frees its memory now; a closed session refuses to run."""

    providers: list[str]

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class HandOver:
    """What a floor session hands the audio session of the same folder: ``name``, a tensor
    the floor session also outputs and the audio session takes in a feed in place of
    computing it again (OpenVINO: each window's log-mel), kept from the floor pass to the
    audio pass for at most ``windows`` windows at a time (the memory it holds)."""

    name: str
    windows: int
