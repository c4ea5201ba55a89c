"""``Embedder``: audio items and sentences → embeddings, batched, as the reference computes them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from runtime.audio.reading import AudioItem, Track, load_track
from runtime.batching import Batch, means, track_floors, track_groups, window_rows
from runtime.engines.choice import choose
from runtime.engines.folder import FolderSessions, Tuning
from runtime.errors import InputError, NonFiniteEmbeddings
from runtime.manifest import read_manifest
from runtime.text import TextBatcher, check_texts

SPACES = ("joint", "encoder")
BATCH_SIZE = 8  # windows or sentences per graph call, by default
# A space, or several: one array, or a dict of them by space (every graph computes both).
Space = str | Sequence[str]
Rows = np.ndarray | dict[str, np.ndarray]


def check_space(space: str) -> None:
    if space not in SPACES:
        raise InputError(f"space must be one of {SPACES}, got {space!r}")


def space_names(space: Space) -> tuple[str, ...]:
    """The spaces ``space`` asks for, each checked, in order and once."""
    names = (space,) if isinstance(space, str) else tuple(dict.fromkeys(space))
    if not names:
        raise InputError(f"space: name at least one of {SPACES}")
    for name in names:
        check_space(name)
    return names


def by_space(space: Space, names: tuple[str, ...], rows: Sequence[np.ndarray]) -> Rows:
    """One array for a single space asked by name, else ``{space: array}``."""
    return rows[0] if isinstance(space, str) else dict(zip(names, rows, strict=True))


def check_items(items: object) -> list:
    """A list of items; a lone path or array is refused rather than guessed at."""
    if isinstance(items, (str, bytes, os.PathLike, np.ndarray)):
        raise InputError("items must be a list (of paths or arrays): wrap the single item in [...]")
    try:
        return list(items)
    except TypeError:
        raise InputError(f"items must be a list, got {type(items).__name__}") from None


def finish(rows: np.ndarray, normalize: bool) -> np.ndarray:
    bad = np.flatnonzero(~np.isfinite(rows).all(axis=1))
    if len(bad):
        raise NonFiniteEmbeddings(bad.tolist())
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
            the installed packages allow at that precision, never a lower one
            (``runtime.engines.choice.choose``).
        tuning: how the backend runs the graphs (``runtime.engines.folder.Tuning``).

    Raises:
        InputError: a bad folder (naming the file), a precision whose graphs the folder
            lacks (naming the command that writes them), a backend that cannot run here.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike,
        *,
        providers: list[str] | None = None,
        threads: int | None = None,
        batch_size: int = BATCH_SIZE,
        precision: str = "fp32",
        backend: str = "auto",
        tuning: Tuning | None = None,
    ):
        self.model_dir = Path(model_dir)
        self.manifest = read_manifest(self.model_dir)
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        choice = choose(self.manifest, self.model_dir, precision, backend, providers)
        self.backend, self.precision, self.note = choice.backend, choice.precision, choice.note
        self.threads = threads
        self.batch_size = batch_size
        self._sessions = FolderSessions(
            self.model_dir,
            self.manifest,
            choice,
            providers=providers,
            threads=threads,
            tuning=tuning,
            on_first_open=self._opened,
        )
        self._preprocessing = self.manifest.audio.preprocessing
        self.sample_rate = self._preprocessing.sample_rate
        self._text_batcher = TextBatcher.from_manifest(self.model_dir, self.manifest.text)
        # Called once with ``describe()`` when the first graph has loaded (the CLI prints it).
        self.announce: Callable[[str], None] | None = None

    @property
    def providers(self) -> list[str]:
        """What runs the graphs: onnxruntime's providers (those of a session already open,
        which may have fallen back from what was chosen), ``["OpenVINO CPU (bf16)"]`` and
        the like, or ``["TensorRT"]``."""
        return self._sessions.providers

    def describe(self) -> str:
        """One line on what runs, for logs and the command line."""
        threads = f", {self.threads} threads" if self.threads else ""
        line = f"{self.backend}, {self.precision}: {', '.join(self.providers)}{threads}"
        return f"{line} ({self.note})" if self.note else line

    def _opened(self) -> None:
        if self.announce:
            self.announce(self.describe())

    def load_audio(self) -> None:
        """Open the audio graphs now rather than on first use (``ttmr index`` does it while
        the catalog library imports)."""
        for tower in ("floor", "audio") if self._sessions.floored else ("audio",):
            self._sessions.get(tower)

    def load_text(self) -> None:
        """Open the text graph now rather than on first use (a server, before its first
        request)."""
        self._sessions.get("text")

    def token_count(self, texts: list[str]) -> int:
        """Tokens the text tower reads for ``texts``, after its truncation."""
        encodings = self._text_batcher.tokenizer.encode_batch(texts)
        return sum(len(encoding.ids) for encoding in encodings)

    def close(self) -> None:
        """Frees the loaded graphs now; a later call loads them again."""
        self._sessions.close()

    def width(self, tower: str, space: str) -> int:
        """Embedding size of ``space`` from ``tower``, as the manifest records it."""
        return self.manifest.tower(tower).outputs[SPACES.index(space)].shape[1]

    def load_tracks(self, items: Iterable[AudioItem], sample_rate: int | None) -> list[Track]:
        """Decode and window every item first: one bad item fails before any graph runs."""
        return [
            load_track(index, item, sample_rate, self._preprocessing)
            for index, item in enumerate(check_items(items))
        ]

    def embed_tracks(self, tracks: Sequence[Track], space: Space = "joint") -> Rows:
        """Mean over each track's window embeddings, ``[len(tracks), D]`` (per space);
        windows of any tracks go into graph calls of ``batch_size`` rows."""
        names = space_names(space)
        windows = self._window_rows(tracks, names)
        return by_space(space, names, [means(rows, tracks) for rows in windows])

    def embed_windows(self, tracks: Sequence[Track], space: Space = "joint") -> Rows:
        """Every window's embedding, ``[windows of all tracks, D]`` in track order (per
        space): what ``embed_tracks`` averages."""
        names = space_names(space)
        return by_space(space, names, self._window_rows(tracks, names))

    def _window_rows(self, tracks: Sequence[Track], names: tuple[str, ...]) -> list[np.ndarray]:
        """``embed_windows`` for the spaces ``names``. Where the floor session hands the
        audio session a tensor (``HandOver``), tracks go in groups of at most its
        ``windows``, whose tensors are kept from the floor pass to the audio pass."""
        hand_over = self._sessions.hand_over() if self._sessions.floored else None
        groups = []
        for group in track_groups(tracks, hand_over.windows if hand_over else None):
            fits = hand_over and sum(len(track.windows) for track in group) <= hand_over.windows
            groups.append(self._group_rows(group, names, hand_over.name if fits else None))
        return [np.concatenate(rows) for rows in zip(*groups, strict=True)]

    def _group_rows(
        self, tracks: Sequence[Track], names: tuple[str, ...], kept: str | None
    ) -> list[np.ndarray]:
        """``_window_rows`` of one group; ``kept``: the floor pass's output handed on."""
        audio = self._sessions.get("audio")
        floor = self._sessions.get("floor") if self._sessions.floored else None
        handed: dict[int, np.ndarray] = {}  # a batch's handed-on tensor by its first row

        def floor_rows(batch: Batch) -> list[np.ndarray]:
            if kept is None:
                return floor.run(["floor"], batch.feed)
            rows, handed[batch.rows.start] = floor.run(["floor", kept], batch.feed)
            return [rows]

        def audio_rows(batch: Batch) -> list[np.ndarray]:
            given = {kept: handed.pop(batch.rows.start)} if kept else {}
            return audio.run(list(names), {**batch.feed, **given})

        floors = track_floors(tracks, self.batch_size, floor_rows) if floor else None
        widths = [self.width("audio", name) for name in names]
        return window_rows(tracks, self.batch_size, audio_rows, widths, floors)

    def embed_audio(
        self,
        items: Iterable[AudioItem],
        sample_rate: int | None = None,
        *,
        space: Space = "joint",
        normalize: bool = False,
    ) -> Rows:
        """Embed audio files or arrays, one row per item: the mean of its windows.

        Every item is decoded and checked before the first graph call, so a call returns
        every row or raises.

        Args:
            items: a list of paths, or of numpy arrays (mono ``[n]`` or channels-last
                ``[n, c]``, float or integer PCM).
            sample_rate: the arrays' sample rate; not used for paths.
            space: ``"joint"`` (shared with text), ``"encoder"`` (before the projection),
                or a tuple of both: every graph computes both in one pass.
            normalize: L2-normalise each row.

        Returns:
            ``[len(items), width]`` float32; for a tuple of spaces, ``{space: rows}``.

        Raises:
            InputError: a bad item, named by index and path.
        """
        names = space_names(space)
        tracks = self.load_tracks(items, sample_rate)
        rows = self.embed_tracks(tracks, names)
        return by_space(space, names, [finish(rows[name], normalize) for name in names])

    def embed_text(
        self, texts: Iterable[str], *, space: Space = "joint", normalize: bool = False
    ) -> Rows:
        """Embed sentences, one row per sentence, batched by length.

        Args:
            texts: a list of strings (longer ones are truncated to the model's token limit).
            space: ``"joint"``, ``"encoder"``, or a tuple of both (one pass).
            normalize: L2-normalise each row.

        Returns:
            ``[len(texts), width]`` float32; for a tuple of spaces, ``{space: rows}``.

        Raises:
            InputError: a non-string or invalid-Unicode text, named by index.
        """
        names = space_names(space)
        texts = check_texts(texts)
        session = self._sessions.get("text")
        rows = [np.zeros((len(texts), self.width("text", name)), np.float32) for name in names]
        for positions, feed in self._text_batcher.batches(texts, self.batch_size):
            for where, found in zip(rows, session.run(list(names), feed), strict=True):
                where[positions] = found
        return by_space(space, names, [finish(found, normalize) for found in rows])
