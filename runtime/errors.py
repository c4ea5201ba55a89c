"""The exceptions users need to catch, one family under ``TtmrError``:

- ``InputError`` (a ``ValueError``): bad input; the message names the item.
- ``ModelFolderError`` (an ``InputError``): a model folder the runtime will not run (no or a
  malformed manifest, a missing, swapped or corrupt graph, no graphs at a precision).
- ``MissingDependency`` (an ``ImportError``, and an ``InputError`` so that code reporting bad
  input per item reports it alike): an optional package is not installed; the message names
  the extra that installs it (``missing_dependency``).
- ``NonFiniteEmbeddings`` (a ``RuntimeError``): the model produced NaN or infinity.
- ``TritonUnavailable`` (a ``ConnectionError``): a Triton server out of reach.
"""

from __future__ import annotations


class TtmrError(Exception):
    """Every error the runtime raises on purpose; the message is one line for a user."""


class InputError(TtmrError, ValueError):
    """Bad input to the runtime; the message names the offending item (index, path).

    Raised with ``item=``, it keeps the item and the reason apart (``.item``, ``.reason``), so
    that a caller who knows the item better (a file's path rather than its index in a call)
    can name it without taking the message apart."""

    def __init__(self, reason: str, item: str | None = None):
        super().__init__(reason if item is None else f"{item}: {reason}")
        self.item, self.reason = item, reason


class ModelFolderError(InputError):
    """A model folder the runtime will not run; the message names the file and the fix."""


class MissingDependency(InputError, ImportError):
    """An optional package is not installed: ``.package`` (its name), ``.extra`` (this
    project's extra that installs it). Made by ``missing_dependency``."""

    def __init__(self, reason: str, package: str, extra: str, item: str | None = None):
        super().__init__(reason, item)
        self.package, self.extra = package, extra
        self.msg = str(self)  # what an ImportError's message is read from


class NonFiniteEmbeddings(TtmrError, RuntimeError):
    """The model produced NaN or infinite embeddings (``.items``: their rows in the call)."""

    def __init__(self, items: list[int]):
        super().__init__(f"items {items}: the model produced non-finite embeddings")
        self.items = items


class TritonUnavailable(TtmrError, ConnectionError):
    """No answer from the Triton server (down, refusing connections, a wrong address): a
    ``ConnectionError``, so callers can retry or fail over; the message names the URL."""


def missing_dependency(
    package: str,
    *,
    extra: str,
    needed_for: str,
    pip_options: str = "",
    alternative: str = "",
    item: str | None = None,
) -> MissingDependency:
    """The error for ``package`` missing where ``needed_for`` (e.g. "the catalog") needs it:
    how to install this project's ``extra`` from its checkout (it is on no package index),
    with ``pip_options`` (another index) where the extra needs them, or ``alternative``."""
    options = f" {pip_options}" if pip_options else ""
    other = f"; or {alternative}" if alternative else ""
    reason = (
        f"{package} is not installed ({needed_for} needs it): "
        f"pip install -e '.[{extra}]'{options} in the ttmr-runtime checkout{other}"
    )
    return MissingDependency(reason, package, extra, item)


def first_line(err: BaseException) -> str:
    """A library error's gist for a one-line message (many span several lines)."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
