"""Where an evaluation's embeddings come from: a model folder (audio cached per model and
file), or embeddings made elsewhere (``--embeddings DIR``), scored with the same metrics.

A folder of precomputed embeddings holds up to four files, one per tower and space:
``audio_joint``, ``audio_encoder``, ``text_joint``, ``text_encoder``, each either ``.npz``
with ``embeddings`` (rows) and ``items`` (what each row belongs to; what ``ttmr embed-audio
--out X.npz`` writes) or ``.npy`` rows with a ``.txt`` beside it naming them, one a line.
Audio items are file paths (absolute, or relative to the music folder); text items are the
exact sentences (prompts) embedded."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from runtime.embedder import SPACES, Embedder
from runtime.errors import InputError
from runtime.evaluate.embedding import embed_files, embed_texts
from runtime.files import write_atomically

TOWERS = ("audio", "text")


class EmbeddingSource(Protocol):
    """What the evaluations read embeddings through: ``spaces`` per tower, ``text``
    (sentences → rows) and ``audio`` (files → raw rows), per space."""

    name: str
    spaces: dict[str, tuple[str, ...]]

    def summary(self) -> dict: ...

    def text(self, sentences: Sequence[str], spaces: Sequence[str]) -> dict[str, np.ndarray]: ...

    def audio(self, paths: Sequence[Path], spaces: Sequence[str]) -> dict[str, np.ndarray]: ...


class ModelSource:
    """Embeddings from a model; audio rows are kept in ``cache`` (a folder, or None) per
    model, precision and file (path, size and modification time), so a re-run with other
    prompts or rules decodes no audio."""

    def __init__(self, model: Embedder, cache: Path | None = None):
        self.model, self.cache = model, cache
        self.name = Path(model.model_dir).name
        self.spaces = {tower: SPACES for tower in TOWERS}

    def summary(self) -> dict:
        return {
            "model_dir": str(self.model.model_dir),
            "precision": self.model.precision,
            "random_weights": self.model.manifest.random_weights,
        }

    def text(self, sentences: Sequence[str], spaces: Sequence[str]) -> dict[str, np.ndarray]:
        return embed_texts(self.model, sentences, spaces)

    def audio(self, paths: Sequence[Path], spaces: Sequence[str]) -> dict[str, np.ndarray]:
        """Raw (not normalised) rows per space; only files missing from the cache are
        embedded."""
        if self.cache is None:
            return embed_files(self.model, paths, spaces, normalize=False)
        store = self.cache / f"{self.model_key()}.npz"
        known = read_cache(store)
        stamps = {path: file_stamp(path) for path in paths}
        missing = [p for p in paths if known.get(str(p), (None,))[0] != stamps[p]]
        if missing:
            rows = embed_files(self.model, missing, SPACES, normalize=False)
            for index, path in enumerate(missing):
                known[str(path)] = (stamps[path], {s: rows[s][index] for s in SPACES})
            write_cache(store, known)
        return {s: np.stack([known[str(p)][1][s] for p in paths]) for s in spaces}

    def model_key(self) -> str:
        """The model folder's manifest and files (names, sizes, times) and the precision."""
        folder = Path(self.model.model_dir).resolve()
        digest = hashlib.sha256(str(folder).encode())
        digest.update(self.model.precision.encode())
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            digest.update(f"{path.name}:{file_stamp(path)}".encode())
        return digest.hexdigest()[:20]


def file_stamp(path: Path) -> str:
    """Size and modification time: a file changed since it was cached is embedded again."""
    try:
        info = path.stat()
    except OSError as err:
        raise InputError(f"cannot read it ({err.strerror or err})", item=str(path)) from None
    return f"{info.st_size}:{info.st_mtime_ns}"


def read_cache(store: Path) -> dict[str, tuple[str, dict[str, np.ndarray]]]:
    """path → (stamp, {space: row}); an unreadable cache is treated as empty."""
    try:
        with np.load(store, allow_pickle=False) as data:
            paths, stamps = data["paths"].tolist(), data["stamps"].tolist()
            rows = {space: data[space] for space in SPACES}
    except (OSError, KeyError, ValueError):
        return {}
    return {
        p: (s, {sp: rows[sp][i] for sp in SPACES})
        for i, (p, s) in enumerate(zip(paths, stamps, strict=True))
    }


def write_cache(store: Path, known: dict[str, tuple[str, dict[str, np.ndarray]]]) -> None:
    paths = list(known)
    arrays = {space: np.stack([known[p][1][space] for p in paths]) for space in SPACES}
    stamps = np.array([known[p][0] for p in paths])
    write_atomically(store, lambda fh: np.savez(fh, paths=np.array(paths), stamps=stamps, **arrays))


class PrecomputedSource:
    """Embeddings read from a folder (see the module's docstring), as they are (raw); a space
    whose file is absent is not measured."""

    def __init__(self, folder: Path, music_dir: Path | None = None):
        if not folder.is_dir():
            raise InputError(f"--embeddings {str(folder)!r} is not a folder")
        self.folder, self.name = folder, folder.name
        self.music_dir = music_dir.resolve() if music_dir else None
        self.tables: dict[str, dict[str, dict[str, np.ndarray]]] = {t: {} for t in TOWERS}
        for tower in TOWERS:
            for space in SPACES:
                found = read_embeddings(folder, f"{tower}_{space}")
                if found is not None:
                    self.tables[tower][space] = found
        if not any(self.tables.values()):
            raise InputError(
                f"--embeddings {str(folder)!r} holds none of audio_joint, audio_encoder, "
                "text_joint, text_encoder (.npz, or .npy with a .txt of names)"
            )
        self.spaces = {t: tuple(s for s in SPACES if s in self.tables[t]) for t in TOWERS}

    def summary(self) -> dict:
        return {"embeddings": str(self.folder), "random_weights": False}

    def key(self, tower: str, item: str | Path) -> str:
        if tower == "text":
            return str(item)
        path = Path(item)
        if self.music_dir and path.is_absolute() and path.is_relative_to(self.music_dir):
            path = path.relative_to(self.music_dir)
        return path.as_posix()

    def rows(self, tower: str, items: Sequence, spaces: Sequence[str]) -> dict[str, np.ndarray]:
        found = {}
        for space in spaces:
            table = self.tables[tower].get(space)
            if table is None:
                raise InputError(f"--embeddings {str(self.folder)!r} has no {tower}_{space} file")
            keys = [self.key(tower, item) for item in items]
            missing = [key for key in keys if key not in table]
            if missing:
                raise InputError(
                    f"{tower}_{space} in {str(self.folder)!r} has no row for {missing[0]!r} "
                    f"({len(missing)} of the {len(keys)} {tower} items asked for are missing)"
                )
            rows = [table[key] for key in keys]
            found[space] = np.stack(rows) if rows else np.zeros((0, 0), np.float32)
        return found

    def text(self, sentences: Sequence[str], spaces: Sequence[str]) -> dict[str, np.ndarray]:
        return self.rows("text", sentences, spaces)

    def audio(self, paths: Sequence[Path], spaces: Sequence[str]) -> dict[str, np.ndarray]:
        return self.rows("audio", paths, spaces)


def read_embeddings(folder: Path, stem: str) -> dict[str, np.ndarray] | None:
    """item → row from ``stem.npz`` or ``stem.npy`` + ``stem.txt``; None if neither exists."""
    npz, npy = folder / f"{stem}.npz", folder / f"{stem}.npy"
    try:
        if npz.is_file():
            where = npz
            with np.load(npz, allow_pickle=False) as data:
                rows, items = data["embeddings"], [str(i) for i in data["items"].tolist()]
        elif npy.is_file():
            where, names = npy, folder / f"{stem}.txt"
            if not names.is_file():
                raise InputError(f"{npy}: no {names.name} beside it naming its rows, one a line")
            rows = np.load(npy, allow_pickle=False)
            items = names.read_text(encoding="utf-8-sig").splitlines()
        else:
            return None
    except (OSError, KeyError, ValueError) as err:
        raise InputError(f"{folder / stem}: not readable embeddings ({err})") from None
    if rows.ndim != 2 or not np.isfinite(rows).all():
        raise InputError(f"{where}: expected a finite 2-d array of rows, got shape {rows.shape}")
    if len(items) != len(rows):
        raise InputError(f"{where}: {len(rows)} rows but {len(items)} names")
    if len(set(items)) != len(items):
        raise InputError(f"{where}: a name is listed twice")
    return dict(zip(items, rows.astype(np.float32), strict=True))
