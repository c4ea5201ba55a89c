"""The exceptions users need to catch: bad input, and a Triton server out of reach."""


class InputError(ValueError):
    """Bad input to the runtime; the message names the offending item (index, path)."""


class ItemError(InputError):
    """Bad input about one item of a list: ``label`` names the item ("item 3 ('a.wav')"),
    ``reason`` says what is wrong with it, so that a caller that lists failures by path
    (``ttmr index``) can print the reason alone."""

    def __init__(self, label: str, reason: str):
        super().__init__(f"{label}: {reason}")
        self.label = label
        self.reason = reason


def first_line(err: BaseException) -> str:
    """A library error's gist for a one-line message (many span several lines)."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


class TritonUnavailable(ConnectionError):
    """No answer from the Triton server (down, refusing connections, a wrong address): a
    ``ConnectionError``, so callers can retry or fail over; the message names the URL."""
