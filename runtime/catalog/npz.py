"""A catalog's rows in memory (paths, durations, joint embeddings), for whole-catalog work
such as ``eval retrieval``: read from a catalog folder (``runtime.catalog.store``) or from a
``.npz`` file (what ``ttmr catalog export`` writes, and what ``index`` wrote before catalogs
were LanceDB folders)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.errors import InputError
from runtime.files import write_atomically


@dataclass
class NpzCatalog:
    paths: list[str] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> NpzCatalog:
        if path.is_dir():
            return cls.from_folder(path)
        if not path.is_file():
            raise InputError(f"catalog {str(path)!r} does not exist: build it with 'index'")
        try:
            with np.load(path) as data:
                return cls(
                    paths=[str(p) for p in data["paths"]],
                    durations=[float(d) for d in data["durations"]],
                    embeddings=list(data["embeddings"]),
                )
        except (OSError, ValueError, KeyError) as err:
            raise InputError(f"catalog {str(path)!r} is not a catalog file ({err})") from None

    @classmethod
    def from_folder(cls, folder: Path) -> NpzCatalog:
        from runtime.catalog.store import Catalog

        catalog = cls()
        for batch in Catalog.open(folder).batches(["path", "duration", "vector"]):
            catalog.paths += map(os.fsdecode, batch["path"].to_pylist())
            catalog.durations += batch["duration"].to_pylist()
            catalog.embeddings += list(vectors_of(batch["vector"]))
        return catalog

    def matrix(self) -> np.ndarray:
        return np.stack(self.embeddings) if self.embeddings else np.zeros((0, 0), np.float32)

    def save(self, path: Path) -> None:
        """Atomically: an interrupted save leaves the previous catalog. Paths are stored as
        ``os.fsdecode`` gives them (a name that is not UTF-8 keeps its surrogate escapes)."""

        def write(fh) -> None:
            np.savez(
                fh,
                paths=np.array(self.paths, dtype=str),
                durations=np.array(self.durations, dtype=np.float64),
                embeddings=self.matrix().astype(np.float32),
            )

        write_atomically(path, write)


def vectors_of(column) -> np.ndarray:
    """An Arrow fixed-size-list column of float32 → ``[n, width]``."""
    return column.flatten().to_numpy().reshape(len(column), -1)
