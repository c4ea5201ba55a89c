"""``eval triplets``: does the model place an instrument nearer to a related one than to an
unrelated one, in text, in audio and across the two (the ISMIR 2024 triplet test)?

A triplet file is a CSV with the header ``anchor,positive,negative``. A cell ending in an
audio extension is an audio file (relative to the triplet file's folder); any other cell is
an instrument term, embedded through the prompt template. With a music folder, a term also
has audio: the mean of its files' unit-length embeddings. A triplet passes when
cos(anchor, positive) > cos(anchor, negative) (a tie fails). Settings: text–text and
audio–audio in the encoder and the joint space, text–audio (text anchor, audio positive and
negative) in the joint space only, the one space the two towers share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.audio.reading import AUDIO_EXTENSIONS
from runtime.embedder import SPACES
from runtime.errors import InputError
from runtime.evaluate.inputs import read_table
from runtime.evaluate.metrics import bootstrap_interval, check_bootstrap, unit_rows
from runtime.evaluate.reports import print_table
from runtime.evaluate.sources import EmbeddingSource

ROLES = ("anchor", "positive", "negative")
# setting → the modality of anchor, positive and negative, and the spaces it is measured in
SETTINGS = {
    "text-text": (("text", "text", "text"), SPACES),
    "audio-audio": (("audio", "audio", "audio"), SPACES),
    "text-audio": (("text", "audio", "audio"), ("joint",)),
}


@dataclass(frozen=True)
class Cell:
    """One side of a triplet as written: an instrument term or an audio file."""

    text: str
    file: Path | None

    @property
    def term(self) -> str | None:
        return None if self.file else self.text


@dataclass(frozen=True)
class Triplet:
    line: int
    cells: tuple[Cell, Cell, Cell]


def read_triplets(path: Path) -> list[Triplet]:
    _, rows = read_table(path, "triplet file", (ROLES,))
    if not rows:
        raise InputError(f"triplet file {str(path)!r} holds no triplets")
    triplets = []
    for line, texts in rows:
        cells = []
        for text in texts:
            file = None
            if Path(text).suffix.lower() in AUDIO_EXTENSIONS:
                file = (path.parent / text).resolve()
                if not file.is_file():
                    raise InputError(f"{path}, line {line}: audio file {text!r} does not exist")
            cells.append(Cell(text, file))
        triplets.append(Triplet(line, tuple(cells)))
    return triplets


def modalities(cell: Cell, term_files: dict[str, list[Path]]) -> set[str]:
    if cell.file:
        return {"audio"}
    return {"text", "audio"} if cell.text.casefold() in term_files else {"text"}


def check_usable(path: Path, triplets: list[Triplet], term_files: dict[str, list[Path]]) -> None:
    """Every triplet must count in some setting: refused before any model work otherwise."""
    for triplet in triplets:
        if not any(
            all(m in modalities(c, term_files) for c, m in zip(triplet.cells, sides, strict=True))
            for sides, _ in SETTINGS.values()
        ):
            raise InputError(
                f"{path}, line {triplet.line}: no setting can use this triplet: it needs three "
                "terms, three sounds, or a term anchor with audio positive and negative"
            )


class Vectors:
    """Unit-length embeddings of every cell, per modality and space."""

    def __init__(self, text: dict, audio: dict):
        self.text, self.audio = text, audio  # {space: {term or file: vector}}

    def of(self, cell: Cell, modality: str, space: str) -> np.ndarray | None:
        table = self.text if modality == "text" else self.audio
        return table.get(space, {}).get(cell.term or cell.file)


def embed_cells(
    source: EmbeddingSource,
    triplets: list[Triplet],
    template: str,
    term_files: dict[str, list[Path]],
) -> Vectors:
    """Prompts for every term; audio for every file cell and every term with files; in the
    spaces the source has (a space it lacks leaves its settings unmeasured)."""
    cells = {cell for triplet in triplets for cell in triplet.cells}
    terms = sorted({cell.term for cell in cells if cell.term})
    with_audio = [term for term in terms if term.casefold() in term_files]
    cell_files = sorted({cell.file for cell in cells if cell.file})
    term_audio = [f for term in with_audio for f in term_files[term.casefold()]]
    files = list(dict.fromkeys(cell_files + term_audio))  # each file embedded once
    prompts = [template.format(instrument=term) for term in terms]
    text: dict[str, dict] = {}
    if terms:
        rows = source.text(prompts, source.spaces["text"])
        text = {space: dict(zip(terms, unit_rows(r), strict=True)) for space, r in rows.items()}
    audio: dict[str, dict] = {}
    if files:
        for space, rows in source.audio(files, source.spaces["audio"]).items():
            by_file = dict(zip(files, unit_rows(rows), strict=True))
            audio[space] = dict(by_file)
            for term in with_audio:
                centroid = np.mean([by_file[f] for f in term_files[term.casefold()]], axis=0)
                audio[space][term] = unit_rows(centroid)
    return Vectors(text, audio)


def outcome(vectors: Vectors, triplet: Triplet, setting: str, space: str) -> bool | None:
    """Whether the triplet passes in a setting and space; None where a side lacks the
    modality."""
    needed, _ = SETTINGS[setting]
    sides = [vectors.of(c, m, space) for c, m in zip(triplet.cells, needed, strict=True)]
    if any(side is None for side in sides):
        return None
    anchor, positive, negative = sides
    return bool(anchor @ positive > anchor @ negative)


def evaluate_triplets(
    source: EmbeddingSource,
    path: Path,
    template: str,
    term_files: dict[str, list[Path]],
    resamples: int,
    confidence: float,
    seed: int,
) -> dict:
    """Accuracy with a bootstrap interval per setting and space, and every triplet's
    outcomes. ``term_files`` maps instrument names to audio files (may be empty)."""
    term_files = {name.casefold(): files for name, files in term_files.items()}
    triplets = read_triplets(path)
    check_bootstrap(resamples, confidence)  # before the model work, not after
    check_usable(path, triplets, term_files)
    vectors = embed_cells(source, triplets, template, term_files)
    keys = [(setting, space) for setting, (_, spaces) in SETTINGS.items() for space in spaces]
    per_triplet, results = [], []
    for triplet in triplets:
        passed = {f"{s}/{space}": outcome(vectors, triplet, s, space) for s, space in keys}
        sides = {role: cell.text for role, cell in zip(ROLES, triplet.cells, strict=True)}
        per_triplet.append({"line": triplet.line, **sides, **passed})
    for setting, space in keys:
        found = [row[f"{setting}/{space}"] for row in per_triplet]
        outcomes = np.array([value for value in found if value is not None], dtype=bool)
        entry = {"setting": setting, "space": space, "triplets": int(outcomes.size)}
        if outcomes.size:
            low, high = bootstrap_interval(outcomes, resamples, confidence, seed)
            entry |= {"accuracy": float(outcomes.mean()), "ci_low": low, "ci_high": high}
        else:
            entry |= {"accuracy": None, "ci_low": None, "ci_high": None}
        results.append(entry)
    terms = sorted({c.term for t in triplets for c in t.cells if c.term})
    return {
        "triplet_file": str(path),
        "template": template,
        "bootstrap": {"resamples": resamples, "confidence": confidence, "seed": seed},
        "terms_without_audio": [t for t in terms if t.casefold() not in term_files],
        "results": results,
        "per_triplet": per_triplet,
    }


def print_triplets(report: dict) -> None:
    level = f"{report['bootstrap']['confidence']:.0%} CI"
    print_table(
        ["setting", "space", "triplets", "accuracy", level],
        [
            [
                r["setting"],
                r["space"],
                r["triplets"],
                r["accuracy"],
                "—" if r["accuracy"] is None else f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]",
            ]
            for r in report["results"]
        ],
    )
