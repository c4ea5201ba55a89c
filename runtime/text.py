"""Sentences → padded token batches, grouped by length so little padding is computed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from runtime.errors import InputError, first_line
from runtime.manifest import TextTower
from runtime.model_folder import inside


class TextBatcher:
    """The exported ``tokenizer.json`` (truncation built in) plus padding with ``pad_id``,
    to the longest text of a batch or, with ``pad_to``, to that many tokens (CLAP)."""

    def __init__(self, tokenizer_file: Path, pad_id: int, pad_to: int | None = None):
        try:
            self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as err:  # tokenizers raises a bare Exception for a malformed file
            raise InputError(
                f"{tokenizer_file}: not a tokenizer.json ({first_line(err)})"
            ) from None
        self.pad_id = pad_id
        self.pad_to = pad_to

    @classmethod
    def from_manifest(cls, model_dir: Path, text: TextTower) -> TextBatcher:
        """The manifest's text tower: the tokenizer file, the pad id, and ``padding``
        (``longest`` or ``max_length``)."""
        pad_to = text.max_length if text.padding == "max_length" else None
        return cls(inside(model_dir, text.tokenizer, "the tokenizer"), text.pad_token_id, pad_to)

    def batches(
        self, texts: list[str], batch_size: int
    ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """Yield ``(positions in texts, {input_ids, attention_mask})`` in length order."""
        ids = [encoding.ids for encoding in self.tokenizer.encode_batch(texts)]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            length = self.pad_to or max(len(ids[i]) for i in chosen)
            input_ids = np.full((len(chosen), length), self.pad_id, np.int64)
            mask = np.zeros((len(chosen), length), np.int64)
            for row, i in enumerate(chosen):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            yield np.array(chosen), {"input_ids": input_ids, "attention_mask": mask}


def check_texts(texts: object) -> list[str]:
    """A list (or tuple) of strings; a bare string is refused rather than split into chars."""
    if isinstance(texts, (str, bytes)):
        raise InputError("texts must be a list of strings, not a single string: wrap it in [...]")
    try:
        texts = list(texts)
    except TypeError:
        raise InputError(f"texts must be a list of strings, got {type(texts).__name__}") from None
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"item {index}: expected a string, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            # Lone surrogates: from a broken decode, or command-line bytes that are not UTF-8.
            raise InputError(
                f"item {index}: the text is not valid Unicode ({err.reason} at character "
                f"{err.start})"
            ) from None
    return texts
