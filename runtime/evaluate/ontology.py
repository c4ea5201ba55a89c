"""Instrument ontologies and the tree distance between their terms.

An ontology file is an indented tree (``data/hornbostel_sachs.txt`` is the one shipped,
written after the Hornbostel–Sachs classification): one node a line, a child two spaces
deeper than its parent, ``name, alias, … | H-S number`` with the number optional, ``#``
comments. The distance of two terms is the length of the path between them through their
deepest common ancestor; two terms under different top-level classes are unrelated
(``UNRELATED``, −1, the ISMIR 2024 study's convention). A study's own distances can be given
as a table instead (``read_distance_table``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.errors import InputError
from runtime.evaluate.inputs import existing_file, read_table

UNRELATED = -1
INDENT = 2
DATA = Path(__file__).resolve().parent / "data"  # the shipped ontology and tables


@dataclass(frozen=True)
class Node:
    names: tuple[str, ...]  # the first is the node's name, the others its aliases
    number: str | None  # its Hornbostel–Sachs number, where it has one
    path: tuple[str, ...]  # the names from its top-level class down to it


class Ontology:
    """A tree of instrument terms, looked up by any name or alias, case ignored."""

    def __init__(self, nodes: list[Node], source: str):
        self.nodes, self.source = nodes, source
        self.by_name = {name.casefold(): node for node in nodes for name in node.names}
        children = {node.path[:-1] for node in nodes}
        self.leaves = [node for node in nodes if node.path not in children]

    def node(self, term: str) -> Node:
        found = self.by_name.get(term.strip().casefold())
        if found is None:
            raise InputError(f"instrument {term!r} is not in the ontology {self.source!r}")
        return found

    def distance(self, a: str, b: str) -> int:
        """Path length between two terms through their deepest common ancestor, or
        ``UNRELATED`` when they lie under different top-level classes."""
        first, second = self.node(a).path, self.node(b).path
        shared = 0
        for x, y in zip(first, second, strict=False):
            if x != y:
                break
            shared += 1
        return UNRELATED if shared == 0 else len(first) + len(second) - 2 * shared

    def distances(self, terms: list[str]) -> np.ndarray:
        return np.array([[self.distance(a, b) for b in terms] for a in terms], dtype=np.int64)


def parse_line(text: str, where: str) -> tuple[int, tuple[str, ...], str | None]:
    """One ontology line → its depth, its names and its H-S number."""
    stripped = text.lstrip(" ")
    indent = len(text) - len(stripped)
    if "\t" in text[: indent + 1] or indent % INDENT:
        raise InputError(f"indent with multiples of {INDENT} spaces, not tabs", item=where)
    label, _, number = stripped.partition("|")
    names = tuple(name.strip() for name in label.split(","))
    if not all(names):
        raise InputError("a name is empty", item=where)
    return indent // INDENT, names, number.strip() or None


def read_ontology(path: Path | None = None) -> Ontology:
    """The ontology in ``path``, by default the shipped Hornbostel–Sachs tree."""
    source = DATA / "hornbostel_sachs.txt" if path is None else existing_file(path, "ontology")
    try:
        lines = source.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"ontology {str(source)!r} is not UTF-8 text") from None
    nodes: list[Node] = []
    stack: list[str] = []  # the names of the current node's ancestors
    seen: dict[str, int] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        where = f"ontology {str(source)!r}, line {number}"
        depth, names, hs_number = parse_line(text.rstrip(), where)
        if depth > len(stack):
            raise InputError(f"indented {depth - len(stack)} level(s) too deep", item=where)
        for name in names:
            if name.casefold() in seen:
                raise InputError(f"{name!r} is already on line {seen[name.casefold()]}", item=where)
            seen[name.casefold()] = number
        stack = [*stack[:depth], names[0]]
        nodes.append(Node(names, hs_number, tuple(stack)))
    if not nodes:
        raise InputError(f"ontology {str(source)!r} holds no instruments")
    return Ontology(nodes, str(source))


def read_distance_table(path: Path | None = None) -> tuple[list[str], np.ndarray]:
    """A square CSV of term distances (header ``term`` then the terms; −1 = unrelated), by
    default the ISMIR 2024 study's table of the 14 TinySOL instruments."""
    source = DATA / "ismir2024_tinysol_distances.csv" if path is None else path
    where = f"distance table {str(source)!r}"
    header, rows = read_table(source, "distance table", None)
    terms = [cells[0] for _, cells in rows]
    folded = [term.casefold() for term in terms]
    if list(header[1:]) != folded or len(set(folded)) != len(terms):
        raise InputError(f"{where}: the header must list the row terms, each once, in order")
    try:
        table = np.array([[int(cell) for cell in cells[1:]] for _, cells in rows])
    except ValueError as err:
        raise InputError(f"{where}: distances must be whole numbers ({err})") from None
    if (np.diag(table) != 0).any() or (table != table.T).any() or (table < UNRELATED).any():
        raise InputError(f"{where}: distances must be symmetric, 0 on the diagonal, ≥ −1")
    return terms, table


def subtable(terms: list[str], table: np.ndarray, wanted: list[str], where: str) -> np.ndarray:
    """The distances among ``wanted`` (in that order); a term not in ``terms`` is refused."""
    at = {term.casefold(): index for index, term in enumerate(terms)}
    for term in wanted:
        if term.casefold() not in at:
            raise InputError(f"instrument {term!r} is not in {where}")
    keep = [at[term.casefold()] for term in wanted]
    return table[np.ix_(keep, keep)]
