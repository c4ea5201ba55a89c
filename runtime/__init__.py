"""ttmr-runtime: embeddings from exported two-tower music-text graphs (TTMR++, LAION-CLAP and
MusCALL), without torch.

import runtime
model = runtime.Embedder("models/demo")
tracks = model.embed_audio(["song.mp3"], normalize=True)
queries = model.embed_text(["a calm solo piano piece in D"], normalize=True)
scores = queries @ tracks.T
both = model.embed_audio(["song.mp3"], space=("joint", "encoder"))  # {space: rows}, one pass

Errors: ``runtime.errors`` (``TtmrError``, ``InputError``, ``ModelFolderError``,
``MissingDependency``, ``NonFiniteEmbeddings``, ``TritonUnavailable``).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path

from runtime.audio.reading import AudioItem
from runtime.embedder import Embedder, Rows
from runtime.errors import (
    InputError,
    MissingDependency,
    ModelFolderError,
    NonFiniteEmbeddings,
    TritonUnavailable,
    TtmrError,
)
from runtime.model_folder import model_dir_from as _model_dir_from

__all__ = [
    "Catalog",
    "Embedder",
    "InputError",
    "MissingDependency",
    "ModelFolderError",
    "NonFiniteEmbeddings",
    "TritonEmbedder",
    "TritonUnavailable",
    "TtmrError",
    "__version__",
    "embed_audio",
    "embed_text",
]


def _version() -> str:
    """The installed package's version, else (a checkout run without installing) the one
    its pyproject.toml states."""
    try:
        return importlib.metadata.version("ttmr-runtime")
    except importlib.metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        text = pyproject.read_text() if pyproject.is_file() else ""
        found = re.search(r'^version = "([^"]+)"', text, re.M)
        return found.group(1) if found else "unknown"


__version__ = _version()

# The Embedder options the module-level helpers take besides the call's own arguments.
EMBEDDER_OPTIONS = ("providers", "threads", "batch_size", "precision", "backend", "tuning")
_embedders: dict[tuple, Embedder] = {}
_embedders_lock = threading.Lock()


def _embedder(model_dir: str | os.PathLike | None, kwargs: dict) -> Embedder:
    """The cached Embedder of this folder and these options; ``kwargs`` keeps the call's own
    arguments once the Embedder options are taken out of it."""
    options = {name: kwargs.pop(name) for name in EMBEDDER_OPTIONS if name in kwargs}
    folder = _model_dir_from(model_dir).resolve()
    key = (folder, repr(sorted(options.items())))
    with _embedders_lock:  # threads calling embed_audio() at once share one Embedder
        if key not in _embedders:
            _embedders[key] = Embedder(folder, **options)
        return _embedders[key]


def embed_audio(
    items: Iterable[AudioItem], model_dir: str | os.PathLike | None = None, **kwargs
) -> Rows:
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
        ``[len(items), width]`` float32, one row per item; a tuple of spaces gives
        ``{space: rows}`` from one pass of the graphs.

    Raises:
        InputError: no model folder, a bad folder or a bad item (named).
    """
    return _embedder(model_dir, kwargs).embed_audio(items, **kwargs)


def embed_text(texts: Iterable[str], model_dir: str | os.PathLike | None = None, **kwargs) -> Rows:
    """Embed sentences with the model in ``model_dir``, as ``embed_audio`` does audio.

    Args:
        texts: a list of strings.
        model_dir: a folder written by ``export/to_onnx.py``; None: ``$TTMR_MODEL_DIR``.
        **kwargs: the ``Embedder``'s options and ``Embedder.embed_text``'s own arguments
            (``space``, ``normalize``).

    Returns:
        ``[len(texts), width]`` float32, one row per sentence; a tuple of spaces gives
        ``{space: rows}``.

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
