"""The one exception users need to catch for bad input."""


class InputError(ValueError):
    """Bad input to the runtime; the message names the offending item (index, path)."""
