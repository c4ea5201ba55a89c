"""The exceptions users need to catch: bad input, and a Triton server out of reach."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input to the runtime; the message names the offending item (index, path).

    Raised with ``item=``, it keeps the item and the reason apart (``.item``, ``.reason``), so
    that a caller who knows the item better (a file's path rather than its index in a call)
    can name it without taking the message apart."""

    def __init__(self, reason: str, item: str | None = None):
        super().__init__(reason if item is None else f"{item}: {reason}")
        self.item, self.reason = item, reason


def first_line(err: BaseException) -> str:
    """A library error's gist for a one-line message (many span several lines)."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


class TritonUnavailable(ConnectionError):
    """No answer from the Triton server (down, refusing connections, a wrong address): a
    ``ConnectionError``, so callers can retry or fail over; the message names the URL."""
