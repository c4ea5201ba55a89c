"""``Embedder``: audio items and sentences → embeddings, batched, as the reference computes them."""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from runtime.audio import AudioItem, Track, load_track
from runtime.errors import InputError
from runtime.manifest import TOWERS, Manifest, Tensor, read_manifest
from runtime.model_folder import graph_inputs, inside
from runtime.session import GraphSession, choose_providers
from runtime.text import TextBatcher, check_texts

SPACES = ("joint", "encoder")
# Where each precision's graphs come from: fp32 is the export itself.
PRECISIONS = {
    "fp32": "export/to_onnx.py",
    "fp16": "export/fp16.py (or to_onnx.py --fp16)",
    "int8": "export/quantize.py (or to_onnx.py --quantize int8)",
}
BACKENDS = ("auto", "onnxruntime", "tensorrt")
BATCH_SIZE = 8  # windows or sentences per graph call, by default


def check_space(space: str) -> None:
    if space not in SPACES:
        raise InputError(f"space must be one of {SPACES}, got {space!r}")


def check_items(items: object) -> list:
    """A list of items; a lone path or array is refused rather than guessed at."""
    if isinstance(items, (str, bytes, os.PathLike, np.ndarray)):
        raise InputError("items must be a list (of paths or arrays): wrap the single item in [...]")
    try:
        return list(items)
    except TypeError:
        raise InputError(f"items must be a list, got {type(items).__name__}") from None


def pack(tracks: Sequence[Track], batch_size: int) -> Iterator[list[int]]:
    """Group whole tracks into calls of at most ``batch_size`` windows (a longer track goes
    alone): where the graph takes ``track`` ids (TTMR++), all windows of a track must share
    one call, since they share the log-mel floor."""
    group, windows = [], 0
    for index, track in enumerate(tracks):
        if group and windows + len(track.windows) > batch_size:
            yield group
            group, windows = [], 0
        group.append(index)
        windows += len(track.windows)
    if group:
        yield group


def tower_feeds(
    windows: np.ndarray, ids: np.ndarray, per_track: bool, batch_size: int
) -> Iterator[dict[str, np.ndarray]]:
    """The audio graph's feeds for one packed group: one call with the rows' track ids where
    a track's windows are coupled, else calls of at most ``batch_size`` independent rows."""
    if per_track:
        yield {"waveform": windows, "track": ids}
        return
    for start in range(0, len(windows), batch_size):
        yield {"waveform": windows[start : start + batch_size]}


def graph_files(manifest: Manifest, model_dir: Path, precision: str) -> dict[str, str]:
    """The ONNX file of each tower at ``precision``."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {tuple(PRECISIONS)}, got {precision!r}")
    files = manifest.graph_files(precision)
    if files is None:
        how = PRECISIONS[precision]
        raise InputError(f"{model_dir}: no {precision} graphs; write them with {how}")
    return files


def engine_files(manifest: Manifest, model_dir: Path, precision: str, backend: str) -> dict | None:
    """The TensorRT engines to run, or None for onnxruntime: ``auto`` takes engines of this
    precision when the folder has them and TensorRT is installed."""
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    engines = manifest.tensorrt.get(precision)
    if backend == "tensorrt" and engines is None:
        flag = " --fp16" if precision == "fp16" else ""
        raise InputError(
            f"{model_dir}: no {precision} TensorRT engines; build them with "
            f"export/to_tensorrt.py --model-dir {model_dir}{flag}"
        )
    installed = importlib.util.find_spec("tensorrt") is not None
    if backend == "tensorrt" or (backend == "auto" and engines and installed):
        return {tower: getattr(engines, tower) for tower in TOWERS}
    return None


def check_graph(path: Path, inputs: tuple[Tensor, ...], tower: str) -> None:
    """The ONNX file is whole and takes the inputs the manifest gives for ``tower``."""
    expected, found = sorted(t.name for t in inputs), sorted(graph_inputs(path))
    if found != expected:
        raise InputError(
            f"{path}: inputs {found} are not the {tower} tower's {expected} "
            "(a swapped or replaced file?)"
        )


def finish(rows: np.ndarray, normalize: bool) -> np.ndarray:
    bad = np.flatnonzero(~np.isfinite(rows).all(axis=1))
    if len(bad):
        raise RuntimeError(f"items {bad.tolist()}: the model produced non-finite embeddings")
    if normalize:
        rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return rows.astype(np.float32, copy=False)


class Embedder:
    """Embeds tracks and sentences with an exported model folder (``export/to_onnx.py``).

    ``precision``: ``fp32`` (the export), ``fp16`` (GPUs; ``export/fp16.py``) or ``int8``
    (CPUs; ``export/quantize.py``). ``backend="auto"`` runs the folder's TensorRT engines
    (``export/to_tensorrt.py``) when it has them at this precision and TensorRT is
    installed, else onnxruntime with ``providers`` (None: CUDA if this onnxruntime has it,
    else CPU). ``.backend`` and ``.providers`` say what runs. ``batch_size`` caps the
    windows (audio) or sentences (text) per graph call.

    One instance may be shared by threads: each graph is loaded once, under a lock.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike,
        providers: list[str] | None = None,
        threads: int | None = None,
        batch_size: int = BATCH_SIZE,
        precision: str = "fp32",
        backend: str = "auto",
    ):
        self.model_dir = Path(model_dir)
        self.manifest = read_manifest(self.model_dir)
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        self.precision = precision
        self.files = graph_files(self.manifest, self.model_dir, precision)
        self.engines = engine_files(self.manifest, self.model_dir, precision, backend)
        self.backend = "onnxruntime" if self.engines is None else "tensorrt"
        # A provider list given by the caller must start; the default may fall back to CPU.
        self.strict_providers = providers is not None
        self.chosen_providers = [] if self.engines else choose_providers(providers)
        self.threads = threads
        self.batch_size = batch_size
        self.preprocessing = self.manifest.audio.preprocessing
        self.sample_rate = self.preprocessing.sample_rate
        self.window_samples = self.preprocessing.window_samples
        # Graphs whose windows of a track are coupled take the rows' track ids (TTMR++).
        self.per_track = "track" in self.manifest.audio.input_names
        # Checked now, so a tampered or partial folder fails here, naming the file.
        self.paths = {
            tower: inside(self.model_dir, name, f"the {tower} graph")
            for tower, name in (self.engines or self.files).items()
        }
        if not self.engines:
            for tower, path in self.paths.items():
                check_graph(path, self.manifest.tower(tower).inputs, tower)
        self.text_batcher = TextBatcher.from_manifest(self.model_dir, self.manifest.text)
        self._sessions: dict = {}
        self._lock = threading.Lock()

    @property
    def providers(self) -> list[str]:
        """What runs the graphs: onnxruntime's providers (those of a session already open,
        which may have fallen back from what was chosen), or ``["TensorRT"]``."""
        if self.engines:
            return ["TensorRT"]
        opened = next(iter(self._sessions.values()), None)
        return opened.providers if opened else self.chosen_providers

    def session(self, tower: str):
        """Created on first use, so audio-only users never load the text tower; once, even
        when many threads ask at the same time."""
        with self._lock:
            if tower not in self._sessions:
                self._sessions[tower] = self.open_session(tower)
            return self._sessions[tower]

    def open_session(self, tower: str):
        path = self.paths[tower]
        if self.engines:
            from runtime.tensorrt import EngineSession

            return EngineSession(path)
        return GraphSession(path, self.chosen_providers, self.threads, self.strict_providers)

    def width(self, tower: str, space: str) -> int:
        """Embedding size of ``space`` from ``tower``, as the manifest records it."""
        return self.manifest.tower(tower).outputs[SPACES.index(space)].shape[1]

    def load_tracks(self, items: Iterable[AudioItem], sample_rate: int | None) -> list[Track]:
        """Decode and window every item first: one bad item fails before any graph runs."""
        return [
            load_track(index, item, sample_rate, self.preprocessing)
            for index, item in enumerate(check_items(items))
        ]

    def embed_tracks(self, tracks: Sequence[Track], space: str = "joint") -> np.ndarray:
        """Mean over each track's window embeddings, ``[len(tracks), D]``."""
        check_space(space)
        session = self.session("audio")
        rows: list[np.ndarray] = [np.empty(0)] * len(tracks)
        for group in pack(tracks, self.batch_size):
            windows = np.concatenate([tracks[i].windows for i in group])
            ids = np.repeat(np.arange(len(group)), [len(tracks[i].windows) for i in group])
            feeds = tower_feeds(windows, ids, self.per_track, self.batch_size)
            out = np.concatenate([session.run([space], feed)[0] for feed in feeds])
            for position, index in enumerate(group):
                rows[index] = out[ids == position].mean(axis=0)
        return np.stack(rows) if rows else np.zeros((0, self.width("audio", space)), np.float32)

    def embed_audio(
        self,
        items: Iterable[AudioItem],
        sample_rate: int | None = None,
        space: str = "joint",
        normalize: bool = False,
    ) -> np.ndarray:
        """One row per item (a path, or an array with ``sample_rate``): ``[N, D]`` float32."""
        check_space(space)
        return finish(self.embed_tracks(self.load_tracks(items, sample_rate), space), normalize)

    def embed_text(
        self, texts: Iterable[str], space: str = "joint", normalize: bool = False
    ) -> np.ndarray:
        """One row per sentence, ``[N, D]`` float32; batched by length."""
        check_space(space)
        texts = check_texts(texts)
        session = self.session("text")
        rows = np.zeros((len(texts), self.width("text", space)), np.float32)
        for positions, feed in self.text_batcher.batches(texts, self.batch_size):
            (rows[positions],) = session.run([space], feed)
        return finish(rows, normalize)
