"""Embedding the evaluation's audio files and sentences in one or both spaces, a few at a time
under a progress bar: each file is decoded once and goes through the graphs once, whatever
the number of spaces, and memory stays flat on a data set of thousands of files."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from runtime.embedder import Embedder, finish
from runtime.errors import InputError

TEXTS_PER_CALL = 64
# Files decoded and embedded together: their decoded audio is what the run holds at a time.
FILES_PER_CHUNK = 8


def embed_files(
    model: Embedder, paths: Sequence[Path], spaces: Sequence[str], normalize: bool = True
) -> dict[str, np.ndarray]:
    """``{space: [len(paths), D]}`` rows (unit-length with ``normalize``), ``FILES_PER_CHUNK``
    files at a time, every space from one pass; an unreadable file stops the run, named."""
    parts: dict[str, list[np.ndarray]] = {space: [] for space in spaces}
    with tqdm(total=len(paths), unit="file", desc="embedding audio", file=sys.stderr) as bar:
        for start in range(0, len(paths), FILES_PER_CHUNK):
            tracks = []
            for path in paths[start : start + FILES_PER_CHUNK]:
                try:
                    tracks.append(model.load_tracks([path], None)[0])
                except InputError as err:  # named by its path, not its place in the call
                    raise InputError(err.reason, item=str(path)) from None
            rows = model.embed_tracks(tracks, tuple(spaces))
            for space in spaces:
                parts[space].append(rows[space])
            bar.update(len(tracks))
    return {space: finish(np.concatenate(rows), normalize) for space, rows in parts.items()}


def embed_texts(
    model: Embedder, texts: Sequence[str], spaces: Sequence[str]
) -> dict[str, np.ndarray]:
    """``{space: [len(texts), D]}`` unit-length rows, every space from one pass."""
    parts: dict[str, list[np.ndarray]] = {space: [] for space in spaces}
    with tqdm(total=len(texts), unit="text", desc="embedding text", file=sys.stderr) as bar:
        for start in range(0, len(texts), TEXTS_PER_CALL):
            chunk = list(texts[start : start + TEXTS_PER_CALL])
            rows = model.embed_text(chunk, space=tuple(spaces), normalize=True)
            for space in spaces:
                parts[space].append(rows[space])
            bar.update(len(chunk))
    return {space: np.concatenate(rows) for space, rows in parts.items()}
