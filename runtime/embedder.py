"""``Embedder``: audio items and sentences → embeddings, batched, as the reference computes them."""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.audio.reading import AudioItem, Track, load_track
from runtime.batching import Batch, means, track_floors, track_groups, window_rows
from runtime.engines.cpu import INT8_FLAGS, named_flags
from runtime.engines.onnxruntime import GraphSession, choose_providers
from runtime.engines.openvino import LOG_MEL, OpenVINOSession, openvino_problem
from runtime.errors import InputError
from runtime.manifest import Manifest, Tensor, read_manifest
from runtime.model_folder import graph_inputs, inside
from runtime.text import TextBatcher, check_texts

SPACES = ("joint", "encoder")
# Where each precision's graphs come from: fp32 is the export itself, and bf16 runs it.
PRECISIONS = {
    "fp32": "export/to_onnx.py",
    "bf16": "export/to_onnx.py (OpenVINO runs the fp32 graphs in bf16)",
    "fp16": "export/fp16.py (or to_onnx.py --fp16)",
    "int8": "export/quantize.py (or to_onnx.py --quantize int8)",
}
BACKENDS = ("auto", "onnxruntime", "openvino", "tensorrt")
BATCH_SIZE = 8  # windows or sentences per graph call, by default
# Windows whose log-mels one call keeps from the floor pass for the audio pass (OpenVINO):
# a TTMR++ log-mel is 0.5 MB, so about 32 MB; a longer track's frontend runs twice instead.
KEPT_WINDOWS = 64


@dataclass(frozen=True)
class Engine:
    """What runs the graphs: ``backend`` at ``precision``, and ``note``, why that is not
    what was asked for (``auto`` only ever moves to a higher precision, never a lower)."""

    backend: str
    precision: str
    note: str | None = None


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
        raise InputError(f"{model_dir}: no {precision} graphs; write them with {how}")
    if backend == "openvino" and precision == "int8":
        static = manifest.int8.calibration is not None
        files = manifest.graph_files("fp32") | ({"audio": files["audio"]} if static else {})
    return files


def choose_engine(
    manifest: Manifest, model_dir: Path, precision: str, backend: str, providers: list | None
) -> Engine:
    """The fastest engine this machine and its packages allow at ``precision``, for
    ``backend="auto"``: the folder's TensorRT engines where TensorRT is installed; bf16 on
    OpenVINO, or fp32 on onnxruntime where the CPU has no bf16 units or OpenVINO is missing;
    int8 on OpenVINO where the CPU has int8 dot-product units (VNNI, AMX-INT8); else
    onnxruntime (which engine is faster at fp32 depends on the CPU: docs/performance.md)."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {tuple(PRECISIONS)}, got {precision!r}")
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if providers is not None and backend == "openvino":
        raise InputError("providers are onnxruntime's; backend 'openvino' takes none")
    if backend == "openvino":
        problem = openvino_problem(precision)
        if problem:
            raise InputError(f"backend openvino: {problem}")
        return Engine("openvino", precision)
    if precision == "bf16":
        if backend == "onnxruntime" or providers is not None:
            raise InputError(
                "bf16 runs on OpenVINO (backend 'openvino' or 'auto'); onnxruntime has no "
                "bf16 CPU kernels"
            )
        if backend == "tensorrt":
            raise InputError("TensorRT engines are fp32 or fp16, not bf16")
        problem = openvino_problem("bf16")
        if problem:
            return Engine("onnxruntime", "fp32", f"bf16 asked for, but {problem}: running fp32")
        return Engine("openvino", "bf16")
    engines = manifest.tensorrt.get(precision)
    if backend == "tensorrt" and engines is None:
        flag = " --fp16" if precision == "fp16" else ""
        raise InputError(
            f"{model_dir}: no {precision} TensorRT engines; build them with "
            f"export/to_tensorrt.py --model-dir {model_dir}{flag}"
        )
    installed = importlib.util.find_spec("tensorrt") is not None
    if backend == "tensorrt" or (backend == "auto" and engines and installed):
        return Engine("tensorrt", precision)
    if precision == "int8" and backend == "auto" and providers is None:
        if named_flags(INT8_FLAGS) and openvino_problem("int8") is None:
            return Engine("openvino", "int8")
    return Engine("onnxruntime", precision)


def engine_files(manifest: Manifest, model_dir: Path, precision: str) -> dict:
    """The TensorRT engine of each graph at ``precision``."""
    engines = manifest.tensorrt[precision]
    if any(getattr(engines, tower) is None for tower in manifest.graphs):
        raise InputError(
            f"{model_dir}: the {precision} TensorRT engines lack the floor engine (built "
            f"by an older version); build them again with export/to_tensorrt.py"
        )
    return {tower: getattr(engines, tower) for tower in manifest.graphs}


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

    ``.backend``, ``.precision`` and ``.providers`` say what runs, ``.note`` why it differs
    from what was asked. One instance may be shared by threads: each graph is loaded once,
    under a lock.

    Args:
        model_dir: the folder ``export/to_onnx.py`` wrote (its ``manifest.json`` names the
            family and its preprocessing).
        providers: onnxruntime's execution providers; None: CUDA if this onnxruntime has
            it, else the CPU. A list given must start with a provider that starts.
        threads: threads per graph call (None: all cores).
        batch_size: windows (audio) or sentences (text) per graph call.
        precision: ``"fp32"`` (the export), ``"bf16"`` (CPUs with AMX or AVX-512-BF16, on
            OpenVINO), ``"fp16"`` (GPUs; ``export/fp16.py``) or ``"int8"`` (CPUs;
            ``export/quantize.py``).
        backend: ``"onnxruntime"``, ``"openvino"`` (CPU), ``"tensorrt"`` (the folder's
            engines, ``export/to_tensorrt.py``) or ``"auto"``: the fastest the machine and
            the installed packages allow at that precision, never a lower one.

    Raises:
        InputError: a bad folder (naming the file), a precision whose graphs the folder
            lacks (naming the command that writes them), a backend that cannot run here.
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
        engine = choose_engine(self.manifest, self.model_dir, precision, backend, providers)
        self.backend, self.precision, self.note = engine.backend, engine.precision, engine.note
        self.files = graph_files(self.manifest, self.model_dir, self.precision, self.backend)
        self.engines = None
        if self.backend == "tensorrt":
            self.engines = engine_files(self.manifest, self.model_dir, self.precision)
        # A provider list given by the caller must start; the default may fall back to CPU.
        self.strict_providers = providers is not None
        onnxruntime = self.backend == "onnxruntime"
        self.chosen_providers = choose_providers(providers) if onnxruntime else []
        self.threads = threads
        self.batch_size = batch_size
        self.preprocessing = self.manifest.audio.preprocessing
        self.sample_rate = self.preprocessing.sample_rate
        self.window_samples = self.preprocessing.window_samples
        # Checked now, so a tampered or partial folder fails here, naming the file.
        self.paths = {
            tower: inside(self.model_dir, name, f"the {tower} graph")
            for tower, name in (self.engines or self.files).items()
        }
        if not self.engines:
            for tower, path in self.paths.items():
                check_graph(path, self.manifest.tower(tower).inputs, tower)
        self.floored = "floor" in self.paths  # TTMR++: rows take their track's log-mel floor
        self.text_batcher = TextBatcher.from_manifest(self.model_dir, self.manifest.text)
        self._sessions: dict = {}
        self._lock = threading.Lock()
        # Called once with ``describe()`` when the first graph has loaded (the CLI prints it).
        self.announce: Callable[[str], None] | None = None

    @property
    def providers(self) -> list[str]:
        """What runs the graphs: onnxruntime's providers (those of a session already open,
        which may have fallen back from what was chosen), ``["OpenVINO CPU (bf16)"]`` and
        the like, or ``["TensorRT"]``."""
        if self.engines:
            return ["TensorRT"]
        opened = [s for tower, s in self._sessions.items() if tower != "floor"]
        if opened:
            return opened[0].providers
        if self.backend == "openvino":
            return [f"OpenVINO CPU ({self.precision})"]  # until a session says more
        return self.chosen_providers

    def describe(self) -> str:
        """One line on what runs, for logs and the command line."""
        threads = f", {self.threads} threads" if self.threads else ""
        line = f"{self.backend}, {self.precision}: {', '.join(self.providers)}{threads}"
        return f"{line} ({self.note})" if self.note else line

    def session(self, tower: str):
        """Created on first use, so audio-only users never load the text tower; once, even
        when many threads ask at the same time."""
        with self._lock:
            if tower not in self._sessions:
                # Said once a tower is open: the floor graph is always f32 and says less.
                before = self.opened_towers()
                self._sessions.update(self.open_sessions(tower))
                if self.announce and not before and self.opened_towers():
                    self.announce(self.describe())
            return self._sessions[tower]

    def opened_towers(self) -> list[str]:
        return [name for name in self._sessions if name != "floor"]

    def load_audio(self) -> None:
        """Open the audio graphs now rather than on first use (``ttmr index`` does it while
        the catalog library imports)."""
        for tower in ("floor", "audio") if self.floored else ("audio",):
            self.session(tower)

    def open_sessions(self, tower: str) -> dict:
        """``tower``'s session, and on OpenVINO the floor graph's and the audio graph's
        together: the floor pass hands each window's log-mel to the audio pass."""
        pair = self.backend == "openvino" and self.floored and tower in ("floor", "audio")
        if not pair:
            return {tower: self.open_session(tower)}
        floor, audio = OpenVINOSession.floored_pair(
            self.paths["floor"], self.paths["audio"], self.precision, self.threads
        )
        return {"floor": floor, "audio": audio}

    def open_session(self, tower: str):
        path = self.paths[tower]
        if self.engines:
            from runtime.engines.tensorrt import EngineSession

            return EngineSession(path)
        if self.backend == "openvino":
            return OpenVINOSession(path, self.precision, self.threads)
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
        """Mean over each track's window embeddings, ``[len(tracks), D]``; windows of any
        tracks go into graph calls of ``batch_size`` rows."""
        return means(self.embed_windows(tracks, space), tracks)

    def embed_windows(self, tracks: Sequence[Track], space: str = "joint") -> np.ndarray:
        """Every window's embedding, ``[windows of all tracks, D]`` in track order: what
        ``embed_tracks`` averages. Where the floor graph hands its log-mel on
        (``LOG_MEL``), tracks go in groups of at most ``KEPT_WINDOWS`` windows, whose
        log-mels are kept from the floor pass to the audio pass."""
        check_space(space)
        floor = self.session("floor") if self.floored else None
        shares = isinstance(floor, OpenVINOSession) and LOG_MEL in floor.outputs
        rows = []
        for group in track_groups(tracks, KEPT_WINDOWS if shares else None):
            keep = shares and sum(len(track.windows) for track in group) <= KEPT_WINDOWS
            rows.append(self.group_rows(group, space, keep))
        return np.concatenate(rows)

    def group_rows(self, tracks: Sequence[Track], space: str, keep: bool) -> np.ndarray:
        """``embed_windows`` of one group; ``keep``: hand the floor pass's log-mels on."""
        audio = self.session("audio")
        floor = self.session("floor") if self.floored else None
        kept: dict[int, np.ndarray] = {}  # a batch's log-mels by its first row

        def floor_rows(batch: Batch) -> list[np.ndarray]:
            if not keep:
                return floor.run(["floor"], batch.feed)
            rows, kept[batch.rows.start] = floor.run(["floor", LOG_MEL], batch.feed)
            return [rows]

        def audio_rows(batch: Batch) -> list[np.ndarray]:
            given = {LOG_MEL: kept.pop(batch.rows.start)} if keep else {}
            return audio.run([space], {**batch.feed, **given})

        floors = track_floors(tracks, self.batch_size, floor_rows) if floor else None
        widths = [self.width("audio", space)]
        (rows,) = window_rows(tracks, self.batch_size, audio_rows, widths, floors)
        return rows

    def embed_audio(
        self,
        items: Iterable[AudioItem],
        sample_rate: int | None = None,
        space: str = "joint",
        normalize: bool = False,
    ) -> np.ndarray:
        """Embed audio files or arrays, one row per item: the mean of its windows.

        Every item is decoded and checked before the first graph call, so a call returns
        every row or raises.

        Args:
            items: a list of paths, or of numpy arrays (mono ``[n]`` or channels-last
                ``[n, c]``, float or integer PCM).
            sample_rate: the arrays' sample rate; not used for paths.
            space: ``"joint"`` (shared with text) or ``"encoder"`` (before the projection).
            normalize: L2-normalise each row.

        Returns:
            ``[len(items), width]`` float32.

        Raises:
            InputError: a bad item, named by index and path.
        """
        check_space(space)
        return finish(self.embed_tracks(self.load_tracks(items, sample_rate), space), normalize)

    def embed_text(
        self, texts: Iterable[str], space: str = "joint", normalize: bool = False
    ) -> np.ndarray:
        """Embed sentences, one row per sentence, batched by length.

        Args:
            texts: a list of strings (longer ones are truncated to the model's token limit).
            space: ``"joint"`` or ``"encoder"``.
            normalize: L2-normalise each row.

        Returns:
            ``[len(texts), width]`` float32.

        Raises:
            InputError: a non-string or invalid-Unicode text, named by index.
        """
        check_space(space)
        texts = check_texts(texts)
        session = self.session("text")
        rows = np.zeros((len(texts), self.width("text", space)), np.float32)
        for positions, feed in self.text_batcher.batches(texts, self.batch_size):
            (rows[positions],) = session.run([space], feed)
        return finish(rows, normalize)
