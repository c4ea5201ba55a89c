"""Embedding the evaluation's audio files and sentences in one or both spaces, a few at a time
under a progress bar: each file is decoded once, whatever the number of spaces, and memory
stays flat on a data set of thousands of files."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from runtime.embedder import Embedder, finish
from runtime.errors import InputError

TEXTS_PER_CALL = 64


def embed_files(
    model: Embedder, paths: Sequence[Path], spaces: Sequence[str], normalize: bool = True
) -> dict[str, np.ndarray]:
    """``{space: [len(paths), D]}`` rows (unit-length with ``normalize``), ``batch_size``
    files at a time; an unreadable file stops the run, named."""
    parts: dict[str, list[np.ndarray]] = {space: [] for space in spaces}
    with tqdm(total=len(paths), unit="file", desc="embedding audio", file=sys.stderr) as bar:
        for start in range(0, len(paths), model.batch_size):
            tracks = []
            for path in paths[start : start + model.batch_size]:
                try:
                    tracks.append(model.load_tracks([path], None)[0])
                except InputError as err:  # named by its path, not its place in the call
                    raise InputError(err.reason, item=str(path)) from None
            for space in spaces:
                parts[space].append(model.embed_tracks(tracks, space))
            bar.update(len(tracks))
    return {space: finish(np.concatenate(rows), normalize) for space, rows in parts.items()}


def embed_texts(
    model: Embedder, texts: Sequence[str], spaces: Sequence[str]
) -> dict[str, np.ndarray]:
    """``{space: [len(texts), D]}`` unit-length rows."""
    parts: dict[str, list[np.ndarray]] = {space: [] for space in spaces}
    with tqdm(total=len(texts), unit="text", desc="embedding text", file=sys.stderr) as bar:
        for start in range(0, len(texts), TEXTS_PER_CALL):
            chunk = list(texts[start : start + TEXTS_PER_CALL])
            for space in spaces:
                parts[space].append(model.embed_text(chunk, space=space, normalize=True))
            bar.update(len(chunk))
    return {space: np.concatenate(rows) for space, rows in parts.items()}
