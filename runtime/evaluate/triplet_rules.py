"""Instrument triplets from a distance table (``ontology``), by one of two rules.

``strict`` (the default): every ordered (anchor, positive, negative) of distinct terms whose
positive is strictly closer to the anchor than the negative, an unrelated term (−1) being
farther than anything; so no triplet is inverted. ``ismir2024``: the ISMIR 2024 study's rule
as its code ran it: terms in table order, positive and negative both after the anchor, kept
when the positive is related and its distance is *larger* than the negative's. On the study's
TinySOL table that gives its 237 triplets, 67 of them inverted (the negative is the closer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.evaluate.ontology import UNRELATED
from runtime.files import write_atomically

RULES = ("strict", "ismir2024")


def farthest_last(table: np.ndarray) -> np.ndarray:
    """Distances with ``UNRELATED`` as infinity, so that ``<`` means "closer"."""
    return np.where(table == UNRELATED, np.inf, table.astype(np.float64))


def make_triplets(table: np.ndarray, rule: str) -> list[tuple[int, int, int]]:
    """``(anchor, positive, negative)`` indices into the table's terms, by ``rule``."""
    count = len(table)
    if rule == "ismir2024":
        return [
            (a, p, n)
            for a in range(count)
            for p in range(a + 1, count)
            for n in range(a + 1, count)
            if n != p and table[a, p] > UNRELATED and table[a, p] > table[a, n]
        ]
    if rule != "strict":
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    far = farthest_last(table)
    return [
        (a, p, n)
        for a in range(count)
        for p in range(count)
        for n in range(count)
        if len({a, p, n}) == 3 and far[a, p] < far[a, n]
    ]


def inverted(table: np.ndarray, triplets: list[tuple[int, int, int]]) -> np.ndarray:
    """Whether each triplet's negative is strictly closer to the anchor than its positive."""
    far = farthest_last(table)
    return np.array([far[a, n] < far[a, p] for a, p, n in triplets], dtype=bool)


def write_triplets(
    path: Path, terms: list[str], triplets: list[tuple[int, int, int]], note: str
) -> None:
    """A triplet CSV ``eval triplets`` reads: ``note`` as a comment, then the rows."""
    lines = [f"# {note}", "anchor,positive,negative"]
    lines += [",".join(csv_cell(terms[i]) for i in triplet) for triplet in triplets]
    text = "\n".join(lines) + "\n"
    write_atomically(path, lambda fh: fh.write(text.encode("utf-8")))


def csv_cell(text: str) -> str:
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\n') else text
