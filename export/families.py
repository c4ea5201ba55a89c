"""The model families the exporter knows: one ``Family`` per package, one registry line each.

A family lives in its own package, ``export/<name>/``, whose ``family`` module defines
``FAMILY = Family(...)`` (keyword arguments); ``REGISTRY`` below maps the family's name to
that module, and that line is the only change outside the package. ``to_onnx.py``,
``quantize.py``, ``fp16.py``, ``to_tensorrt.py``, ``to_triton.py`` and the runtime never
name a family: what differs at run time is written into ``manifest.json`` (``settings``),
and the runtime reads only that.

What a family must provide (the fields of ``Family``):

- ``name``: the ``--family`` value and the manifest's ``family``; ``title``: its name in
  messages (``"TTMR++"``).
- ``options``: the ``to_onnx.py`` options naming the model's files that the family reads,
  by their ``dest`` (``{"checkpoint": "help text", "text_arch": …}``); ``to_onnx.py`` offers
  every registered family's options (an option several families read is one option, its
  help naming each) and refuses, before ``check_source``, one this family does not read.
- ``check_source(source, demo) -> str | None``: why the files given (``Source``, by option;
  ``demo`` for ``--demo``) cannot name this family's model, as one line for ``argparse``;
  ``None`` when they can.
- ``load(source) -> Loaded``: the PyTorch reference (see ``Reference``) from the user's
  files, which are untrusted input (read with ``weights_only=True``, no remote code; a bad
  file is a ``ValueError`` naming it, so that the command ends as one line, exit 2), and
  the weights file whose sha256 the manifest records.
- ``write_demo(folder, seed) -> Source``: the published architecture with seeded random
  weights, written into ``folder`` in the family's upstream formats; returns the ``Source``
  that ``load`` reads it from.
- ``demo_source(folder) -> Source``: the ``Source`` that ``write_demo(folder, …)`` returns,
  from the files' places alone (nothing is read or written), so that a tool given an
  exported demo folder (whose ``checkpoint/`` holds them) can load its reference again.
- ``audio_graph(reference)``, ``text_graph(reference)``: one tower as a torch module, which
  ``export.onnx_export.export_graph`` exports (example inputs, dynamic batch and length,
  checks). Inputs: the audio graph takes ``waveform`` float32 ``[batch, window_samples]``
  and, where the family has ``floor_graph``, ``floor`` float32 ``[batch]`` (below); every
  row is independent of the others; the text graph takes int64 ``[batch, length]`` tensors
  named as in ``export.onnx_export.TEXT_INPUTS``. Outputs ``OUTPUTS``: ``joint`` and
  ``encoder``, float32 ``[batch, width]``.
- ``floor_graph(reference)`` (optional): for a family whose windows of one track share a
  level set by the whole track (TTMR++'s log-mel floor), the module ``waveform [batch,
  window_samples]`` → ``floor [batch]``, each window's own level; a track's level is the
  highest of its windows', which the audio graph takes per row (``runtime.batching``).
- ``settings(reference) -> dict``: the manifest's family-specific parts, JSON-ready:
  ``hparams`` (any JSON object), ``audio`` (``sample_rate``, ``window_samples``,
  ``preprocessing``: ``peak_normalise``, ``int16``, ``short_audio``), ``text``
  (``max_length``, ``padding``: ``longest`` or ``max_length``, ``pad_token_id``) and,
  optionally, ``checkpoint`` (fields recorded beside the weights' name and sha256).
  ``docs/models.md`` says what each field makes the runtime do.
- ``tolerance``: how close the exported graphs must come to the reference on the export's
  own validation (``Tolerance``); a miss fails the export.
- ``int8`` (optional): ``StaticInt8`` for an audio tower calibrated statically
  (``quantize.py``); without it the audio tower's MatMuls are quantised dynamically. The
  text tower is always quantised dynamically.

The reference a family's ``load`` returns (``Reference``) has ``tokenizer`` (a transformers
fast tokenizer: ``to_onnx.py`` saves its ``backend_tokenizer`` as ``tokenizer.json``),
``audio_encode(windows)``, ``tokenize(texts)``, ``text_encode_ids(input_ids,
attention_mask)``, ``text_encode(texts)`` and ``embed_track(waveform, sample_rate)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from torch import nn

# name → the module that defines the family's FAMILY, imported on first use (to_onnx.py
# imports them all for their options). The first is to_onnx.py's default --family.
REGISTRY = {
    "ttmrpp": "export.ttmrpp.family",
    "clap": "export.clap.family",
    "muscall": "export.muscall.family",
}
DEFAULT = next(iter(REGISTRY))


class Reference(Protocol):
    """A family's PyTorch reference: the truth the graphs and the runtime are tested
    against. Tensors in, ``(joint [B, D], encoder [B, E])`` out."""

    tokenizer: object

    def audio_encode(self, windows): ...  # ``[B, window_samples]``: windows of one track

    def tokenize(self, texts: list[str]) -> dict: ...  # ``input_ids``, ``attention_mask``

    def text_encode_ids(self, input_ids, attention_mask): ...

    def text_encode(self, texts: list[str]): ...

    def embed_track(self, waveform, sample_rate: int): ...  # the mean over its windows


class Source:
    """The files ``to_onnx.py``'s options name, by option ``dest``: ``source.checkpoint`` is
    ``--checkpoint``'s path, ``None`` when it was not given (any name: families declare
    their own options)."""

    def __init__(self, **paths: Path | None):
        self._paths = {name: Path(path) for name, path in paths.items() if path is not None}

    def __getattr__(self, name: str) -> Path | None:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._paths.get(name)

    def given(self) -> list[str]:
        """The options given, by ``dest``."""
        return list(self._paths)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Source) and self._paths == other._paths

    def __str__(self) -> str:
        return ", ".join(f"--{name.replace('_', '-')} {path}" for name, path in self._paths.items())


@dataclass(frozen=True)
class Loaded:
    """A loaded reference and the weights file it came from."""

    reference: Reference
    weights: Path


@dataclass(frozen=True)
class Tolerance:
    """The export's validation passes when, on both towers and both outputs, every row's
    cosine to the reference is at least ``min_cosine`` and max |Δ| is at most
    ``max_relative`` times the reference's max |value|."""

    min_cosine: float
    max_relative: float


@dataclass(frozen=True)
class StaticInt8:
    """Static QDQ INT8 of the audio tower: ``calibration(hparams, folder, windows)`` gives
    preprocessed windows ``[n, window_samples]`` per track (from the music in ``folder``, or
    synthetic tracks when it is ``None``; ``windows`` in all), the convolutions whose weight
    names start with one of ``float_convs`` stay in float, and each activation's range ends
    at the ``activation_percentile``-th percentile of its magnitudes over those windows."""

    calibration: Callable[[dict, Path | None, int], list]
    float_convs: tuple[str, ...]
    activation_percentile: float

    @property
    def method(self) -> str:
        """What the manifest records, built from the fields so that it cannot drift."""
        return (
            "static QDQ, per-channel Conv/MatMul, activation ranges at the "
            f"{self.activation_percentile:g}th percentile; frontend and convolutions "
            f"{', '.join(name.rstrip('.') for name in self.float_convs)} in float"
        )


@dataclass(frozen=True, kw_only=True)
class Family:
    """A model family, as ``export/<name>/family.py`` defines it; see the module's docstring."""

    name: str
    title: str
    options: dict[str, str]
    check_source: Callable[[Source, bool], str | None]
    load: Callable[[Source], Loaded]
    write_demo: Callable[[Path, int], Source]
    demo_source: Callable[[Path], Source]
    audio_graph: Callable[[Reference], nn.Module]
    text_graph: Callable[[Reference], nn.Module]
    settings: Callable[[Reference], dict]
    tolerance: Tolerance
    int8: StaticInt8 | None = None
    floor_graph: Callable[[Reference], nn.Module] | None = None


def all_families() -> list[Family]:
    """Every registered family, in the registry's order."""
    return [family(name) for name in REGISTRY]


def family(name: str) -> Family:
    """The family called ``name``; a ``ValueError`` naming the known ones otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model family {name!r} (this exporter knows {sorted(REGISTRY)})")
    found = importlib.import_module(REGISTRY[name]).FAMILY
    if found.name != name:
        raise RuntimeError(f"{REGISTRY[name]} defines family {found.name!r}, not {name!r}")
    return found
