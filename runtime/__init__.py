"""ttmr-runtime: embeddings from exported two-tower graphs (TTMR++, LAION-CLAP, MusCALL),
without torch.

import runtime
model = runtime.Embedder("models/demo")
tracks = model.embed_audio(["song.mp3"], normalize=True)
queries = model.embed_text(["a calm solo piano piece in D"], normalize=True)
scores = queries @ tracks.T
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from runtime.audio.reading import AudioItem
from runtime.embedder import Embedder
from runtime.errors import InputError, TritonUnavailable

__all__ = [
    "Catalog",
    "Embedder",
    "InputError",
    "TritonEmbedder",
    "TritonUnavailable",
    "embed_audio",
    "embed_text",
    "model_dir_from",
]

# The Embedder options the module-level helpers take besides the call's own arguments.
EMBEDDER_OPTIONS = ("providers", "threads", "batch_size", "precision", "backend")
_embedders: dict[tuple, Embedder] = {}
_embedders_lock = threading.Lock()


def model_dir_from(model_dir: str | os.PathLike | None) -> Path:
    """The model folder to use: the argument, else ``$TTMR_MODEL_DIR``.

    Raises:
        InputError: neither is set.
    """
    chosen = model_dir or os.environ.get("TTMR_MODEL_DIR")
    if not chosen:
        raise InputError("no model folder: pass model_dir=... or set TTMR_MODEL_DIR")
    return Path(chosen)


def _embedder(model_dir: str | os.PathLike | None, kwargs: dict) -> Embedder:
    """The cached Embedder of this folder and these options; ``kwargs`` keeps the call's own
    arguments once the Embedder options are taken out of it."""
    options = {name: kwargs.pop(name) for name in EMBEDDER_OPTIONS if name in kwargs}
    folder = model_dir_from(model_dir).resolve()
    key = (folder, repr(sorted(options.items())))
    with _embedders_lock:  # threads calling embed_audio() at once share one Embedder
        if key not in _embedders:
            _embedders[key] = Embedder(folder, **options)
        return _embedders[key]


def embed_audio(
    items: Iterable[AudioItem], model_dir: str | os.PathLike | None = None, **kwargs
) -> np.ndarray:
    """Embed audio with the model in ``model_dir``, without holding an ``Embedder``.

    The same as ``Embedder(model_dir, **options).embed_audio(items, **rest)``, with one
    ``Embedder`` kept per folder and options, shared by threads.

    Args:
        items: paths, or numpy arrays with ``sample_rate`` in ``kwargs``.
        model_dir: a folder written by ``export/to_onnx.py``; None: ``$TTMR_MODEL_DIR``.
        **kwargs: the ``Embedder``'s options (``providers``, ``threads``, ``batch_size``,
            ``precision``, ``backend``) and ``Embedder.embed_audio``'s own arguments
            (``sample_rate``, ``space``, ``normalize``).

    Returns:
        ``[len(items), width]`` float32, one row per item.

    Raises:
        InputError: no model folder, a bad folder or a bad item (named).
    """
    return _embedder(model_dir, kwargs).embed_audio(items, **kwargs)


def embed_text(
    texts: Iterable[str], model_dir: str | os.PathLike | None = None, **kwargs
) -> np.ndarray:
    """Embed sentences with the model in ``model_dir``, as ``embed_audio`` does audio.

    Args:
        texts: a list of strings.
        model_dir: a folder written by ``export/to_onnx.py``; None: ``$TTMR_MODEL_DIR``.
        **kwargs: the ``Embedder``'s options and ``Embedder.embed_text``'s own arguments
            (``space``, ``normalize``).

    Returns:
        ``[len(texts), width]`` float32, one row per sentence.

    Raises:
        InputError: no model folder, a bad folder or a bad text (named).
    """
    return _embedder(model_dir, kwargs).embed_text(texts, **kwargs)


def __getattr__(name: str):
    """``runtime.TritonEmbedder`` and ``runtime.Catalog`` are imported on first use: they
    need tritonclient and LanceDB, which users of the in-process runtime need not install
    (and ``import runtime`` stays light)."""
    if name == "TritonEmbedder":
        from runtime.serving.triton import TritonEmbedder

        return TritonEmbedder
    if name == "Catalog":
        from runtime.catalog.store import Catalog

        return Catalog
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
