"""A music catalog on disk: paths, durations and joint embeddings in one ``.npz`` file that
numpy (and so pandas) reads, written atomically so an interrupted ``index`` resumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.errors import InputError
from runtime.files import write_atomically


@dataclass
class Catalog:
    paths: list[str] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path, missing_ok: bool = False) -> Catalog:
        if path.is_dir():
            raise InputError(f"catalog {str(path)!r} is a folder: give a file name")
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
        """Atomically: an interrupted save leaves the previous catalog."""

        def write(fh) -> None:
            np.savez(
                fh,
                paths=np.array(self.paths, dtype=str),
                durations=np.array(self.durations, dtype=np.float64),
                embeddings=self.matrix().astype(np.float32),
            )

        write_atomically(path, write)

    def check_width(self, width: int, path: Path) -> None:
        """A catalog holds one model's space: rows of another width are refused by name."""
        if self.embeddings and len(self.embeddings[0]) != width:
            raise InputError(
                f"catalog {str(path)!r} holds {len(self.embeddings[0])}-d embeddings, but this "
                f"model's are {width}-d: it was made by another model (use another --out, or "
                "the model that made it)"
            )

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
