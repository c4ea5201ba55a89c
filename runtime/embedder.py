"""``Embedder``: audio items and sentences → embeddings, batched, as the reference computes them."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from runtime.audio import AudioItem, Preprocessing, Track, load_track
from runtime.errors import InputError
from runtime.session import choose_providers, open_session
from runtime.text import TextBatcher, check_texts

SPACES = ("joint", "encoder")
PRECISIONS = ("fp32", "int8")


def read_manifest(model_dir: Path) -> dict:
    path = model_dir / "manifest.json"
    if not path.is_file():
        raise InputError(
            f"model folder {str(model_dir)!r} has no manifest.json: export one with "
            "export/to_onnx.py (or set TTMR_MODEL_DIR)"
        )
    return json.loads(path.read_text())


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


def finish(rows: np.ndarray, normalize: bool) -> np.ndarray:
    bad = np.flatnonzero(~np.isfinite(rows).all(axis=1))
    if len(bad):
        raise RuntimeError(f"items {bad.tolist()}: the model produced non-finite embeddings")
    if normalize:
        rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return rows.astype(np.float32, copy=False)


class Embedder:
    """Embeds tracks and sentences with an exported model folder (``export/to_onnx.py``).

    ``providers=None`` picks TensorRT, then CUDA, then CPU, whichever onnxruntime has;
    ``.providers`` says which. ``batch_size`` caps the windows (audio) or sentences (text)
    per graph call. ``precision="int8"`` uses the graphs of ``export/quantize.py``.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike,
        providers: list[str] | None = None,
        threads: int | None = None,
        batch_size: int = 8,
        precision: str = "fp32",
    ):
        self.model_dir = Path(model_dir)
        self.manifest = read_manifest(self.model_dir)
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "int8" and "int8" not in self.manifest:
            raise InputError(f"{self.model_dir}: no INT8 graphs; run export/quantize.py first")
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        self.files = (
            self.manifest["int8"]
            if precision == "int8"
            else {tower: self.manifest[tower]["file"] for tower in ("audio", "text")}
        )
        self.providers = choose_providers(providers)
        self.threads = threads
        self.batch_size = batch_size
        self.preprocessing = Preprocessing.from_manifest(self.manifest["audio"])
        self.sample_rate = self.preprocessing.sample_rate
        self.window_samples = self.preprocessing.window_samples
        # Graphs whose windows of a track are coupled take the rows' track ids (TTMR++).
        self.per_track = "track" in {i["name"] for i in self.manifest["audio"]["inputs"]}
        self._sessions: dict = {}
        self._text: TextBatcher | None = None

    def session(self, tower: str):
        """Created on first use, so audio-only users never load the text tower."""
        if tower not in self._sessions:
            path = self.model_dir / self.files[tower]
            self._sessions[tower] = open_session(path, self.providers, self.threads)
        return self._sessions[tower]

    def text_batcher(self) -> TextBatcher:
        """The tokenizer, loaded on first use."""
        if self._text is None:
            self._text = TextBatcher.from_manifest(self.model_dir, self.manifest["text"])
        return self._text

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
        width = session.get_outputs()[SPACES.index(space)].shape[1]
        return np.stack(rows) if rows else np.zeros((0, width), np.float32)

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
        width = session.get_outputs()[SPACES.index(space)].shape[1]
        rows = np.zeros((len(texts), width), np.float32)
        for positions, feed in self.text_batcher().batches(texts, self.batch_size):
            (rows[positions],) = session.run([space], feed)
        return finish(rows, normalize)
