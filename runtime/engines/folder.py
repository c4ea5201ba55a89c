"""A model folder's sessions at a ``Choice``: the files that backend and precision run,
checked when the ``Embedder`` is made (a tampered or partial folder fails then, naming the
file), and each tower's session opened on first use, so audio-only users never load the
text tower. What differs between backends (OpenVINO's floor → audio hand-over, TensorRT's
engines in place of the graphs) stays here and in the backends' modules."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runtime.engines import HandOver, Session
from runtime.engines.choice import PRECISIONS, Choice
from runtime.engines.onnxruntime import OnnxRuntimeSession, choose_providers
from runtime.engines.openvino import OpenVINOSession
from runtime.errors import ModelFolderError
from runtime.manifest import Manifest, Tensor
from runtime.model_folder import graph_inputs, inside


@dataclass(frozen=True)
class Tuning:
    """How a backend runs the graphs, beside what the ``Choice`` says.

    ``openvino_whole_graphs``: OpenVINO compiles every graph whole at the precision, each on
    its own (an audio graph's frontend and the floor graph in bf16 too, no log-mel handed
    over): OpenVINO's own way of running the graphs, which ``scripts/bench.py`` times beside
    the runtime's (by default a frontend runs in f32 below fp32, and the floor graph in f32)."""

    openvino_whole_graphs: bool = False


def graph_files(
    manifest: Manifest, model_dir: Path, precision: str, backend: str
) -> dict[str, str]:
    """The ONNX file of each tower at ``precision`` (bf16: the fp32 graphs). int8 on
    OpenVINO runs a static (QDQ) int8 audio graph as it is, and a tower whose int8 graph is
    onnxruntime's dynamic quantisation (OpenVINO runs it slower than fp32) from its fp32
    graph, whose weights OpenVINO stores in int8."""
    files = manifest.graph_files("fp32" if precision == "bf16" else precision)
    if files is None:
        how = PRECISIONS[precision]
        raise ModelFolderError(f"{model_dir}: no {precision} graphs; write them with {how}")
    if backend == "openvino" and precision == "int8":
        static = manifest.int8.calibration is not None
        files = manifest.graph_files("fp32") | ({"audio": files["audio"]} if static else {})
    return files


def engine_files(manifest: Manifest, model_dir: Path, precision: str) -> dict[str, str]:
    """The TensorRT engine of each graph at ``precision``."""
    engines = manifest.tensorrt[precision]
    if any(getattr(engines, tower) is None for tower in manifest.graphs):
        raise ModelFolderError(
            f"{model_dir}: the {precision} TensorRT engines lack the floor engine (built "
            f"by an older version); build them again with export/to_tensorrt.py"
        )
    return {tower: getattr(engines, tower) for tower in manifest.graphs}


def check_graph(path: Path, inputs: tuple[Tensor, ...], tower: str) -> None:
    """The ONNX file is whole and takes the inputs the manifest gives for ``tower``."""
    expected, found = sorted(t.name for t in inputs), sorted(graph_inputs(path))
    if found != expected:
        raise ModelFolderError(
            f"{path}: inputs {found} are not the {tower} tower's {expected} "
            "(a swapped or replaced file?)"
        )


class FolderSessions:
    """The sessions of the folder's towers (``audio``, ``text``, and ``floor`` where rows
    take their track's log-mel floor: TTMR++), as ``choice`` runs them. ``providers``: the
    onnxruntime providers asked for (they must start) or None (CUDA if this onnxruntime has
    it, else CPU); ``threads`` per graph call. ``on_first_open`` is called once, when the
    first tower other than the floor graph has opened (the Embedder says then what runs).

    ``get`` opens a tower once, even when many threads ask at the same time."""

    def __init__(
        self,
        model_dir: Path,
        manifest: Manifest,
        choice: Choice,
        *,
        providers: list[str] | None = None,
        threads: int | None = None,
        tuning: Tuning | None = None,
        on_first_open: Callable[[], None] | None = None,
    ):
        self.choice, self.threads, self.tuning = choice, threads, tuning or Tuning()
        self.on_first_open = on_first_open
        tensorrt = choice.backend == "tensorrt"
        if tensorrt:
            files = engine_files(manifest, model_dir, choice.precision)
        else:
            files = graph_files(manifest, model_dir, choice.precision, choice.backend)
        self.paths = {
            tower: inside(model_dir, name, f"the {tower} graph") for tower, name in files.items()
        }
        if not tensorrt:
            for tower, path in self.paths.items():
                check_graph(path, manifest.tower(tower).inputs, tower)
        self.floored = "floor" in self.paths
        # A provider list given by the caller must start; the default may fall back to CPU.
        self._strict = providers is not None
        onnxruntime = choice.backend == "onnxruntime"
        self._providers = choose_providers(providers) if onnxruntime else []
        self._sessions: dict[str, Session] = {}
        self._hand_over: HandOver | None = None
        self._lock = threading.Lock()

    @property
    def opened(self) -> list[str]:
        """The towers open, the floor graph left out (it is always f32 and says less)."""
        return [tower for tower in self._sessions if tower != "floor"]

    @property
    def providers(self) -> list[str]:
        """What runs the graphs: an open tower's providers (onnxruntime's may have fallen
        back from what was chosen), else what is planned."""
        opened = self.opened
        if opened:
            return self._sessions[opened[0]].providers
        if self.choice.backend == "tensorrt":
            return ["TensorRT"]
        if self.choice.backend == "openvino":
            return [f"OpenVINO CPU ({self.choice.precision})"]  # until a session says more
        return self._providers

    def get(self, tower: str) -> Session:
        """``tower``'s session, opened now if it is not yet."""
        with self._lock:
            if tower not in self._sessions:
                before = self.opened
                self._sessions.update(self._open(tower))
                if self.on_first_open and not before and self.opened:
                    self.on_first_open()
            return self._sessions[tower]

    def hand_over(self) -> HandOver | None:
        """What the floor session hands the audio session (the floor and audio sessions
        open), or None where it hands nothing on."""
        self.get("audio")
        return self._hand_over

    def _open(self, tower: str) -> dict[str, Session]:
        """``tower``'s session; on OpenVINO the floor graph's and the audio graph's
        together, where the floor pass hands each window's log-mel to the audio pass."""
        backend, precision, threads = self.choice.backend, self.choice.precision, self.threads
        path = self.paths[tower]
        if backend == "tensorrt":
            from runtime.engines.tensorrt import TensorRTSession

            return {tower: TensorRTSession(path)}
        if backend == "onnxruntime":
            return {tower: OnnxRuntimeSession(path, self._providers, threads, self._strict)}
        if self.tuning.openvino_whole_graphs:
            return {tower: OpenVINOSession.whole_graph(path, precision, threads)}
        if not (self.floored and tower in ("floor", "audio")):
            return {tower: OpenVINOSession(path, precision, threads)}
        pair = OpenVINOSession.floored_pair(
            self.paths["floor"], self.paths["audio"], precision, threads
        )
        self._hand_over = pair.hand_over
        return {"floor": pair.floor, "audio": pair.audio}

    def close(self) -> None:
        """Closes every open session; a tower asked for later opens again."""
        with self._lock:
            for session in self._sessions.values():
                session.close()
            self._sessions.clear()
            self._hand_over = None
