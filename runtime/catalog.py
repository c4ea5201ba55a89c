"""A music catalog on disk: paths, durations and joint embeddings in one ``.npz`` file that
numpy (and so pandas) reads, written atomically so an interrupted ``index`` resumes."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.errors import InputError


@dataclass
class Catalog:
    paths: list[str] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path, missing_ok: bool = False) -> Catalog:
        if not path.is_file():
            if missing_ok:
                return cls()
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

    def add(self, path: str, duration: float, embedding: np.ndarray) -> None:
        self.paths.append(path)
        self.durations.append(duration)
        self.embeddings.append(embedding)

    def matrix(self) -> np.ndarray:
        return np.stack(self.embeddings) if self.embeddings else np.zeros((0, 0), np.float32)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, scratch = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(handle, "wb") as fh:
            np.savez(
                fh,
                paths=np.array(self.paths, dtype=str),
                durations=np.array(self.durations, dtype=np.float64),
                embeddings=self.matrix().astype(np.float32),
            )
        os.replace(scratch, path)

    def top(self, query: np.ndarray, k: int) -> list[tuple[float, float, str]]:
        """Cosine top-k as ``(score, duration, path)``, best first."""
        if not self.paths:
            return []
        matrix = self.matrix()
        scores = (
            matrix
            @ query
            / np.maximum(np.linalg.norm(matrix, axis=1) * np.linalg.norm(query), 1e-12)
        )
        best = np.argsort(-scores, kind="stable")[:k]
        return [(float(scores[i]), self.durations[i], self.paths[i]) for i in best]
