"""``eval retrieval``: how well text finds music in a catalog, as the TTMR++ paper measures it.

Caption queries (each with one or more relevant tracks) get Recall@1/5/10, mAP@10, MRR and
the median rank; tag queries (each with the tracks that carry the tag) get ROC-AUC and PR-AUC
per tag and their macro averages. Every catalog track is a candidate for every query.

Ground truth is a ``.json`` file ``{"captions": {caption: [track id, ...]}, "tags": {tag:
[track id, ...]}}`` (either key may be left out) or a ``.csv`` file with the header
``caption,track`` or ``tag,track`` and one pair per row. A track id is a catalog path
(absolute, or relative to ``root``), else a file name, else a file stem; a name or stem that
several catalog tracks share is refused rather than guessed at."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.catalog.npz import NpzCatalog
from runtime.errors import InputError
from runtime.evaluate.inputs import read_json, read_table
from runtime.evaluate.metrics import (
    average_precision,
    ranking_metrics,
    relevant_ranks,
    roc_auc,
    unit_rows,
)
from runtime.evaluate.reports import print_table
from runtime.evaluate.sources import EmbeddingSource

QUERY_KINDS = ("captions", "tags")


class TrackIds:
    """The ground truth's track ids → catalog rows (see the module docstring for the rules)."""

    def __init__(self, paths: list[str], root: Path):
        self.paths, self.root = paths, root
        self.by_path = {path: row for row, path in enumerate(paths)}
        self.by_name: dict[str, list[int]] = defaultdict(list)
        self.by_stem: dict[str, list[int]] = defaultdict(list)
        for row, path in enumerate(paths):
            self.by_name[Path(path).name].append(row)
            self.by_stem[Path(path).stem].append(row)

    def row(self, track_id: str, where: str) -> int:
        for path in (track_id, str((self.root / track_id).resolve())):
            if path in self.by_path:
                return self.by_path[path]
        for table, kind in ((self.by_name, "file name"), (self.by_stem, "file stem")):
            rows = table.get(track_id, [])
            if len(rows) > 1:
                shared = ", ".join(repr(self.paths[row]) for row in rows[:3])
                raise InputError(
                    f"{where}: track id {track_id!r} is the {kind} of {len(rows)} catalog tracks "
                    f"({shared}{', …' if len(rows) > 3 else ''}): give its path instead"
                )
            if rows:
                return rows[0]
        raise InputError(
            f"{where}: unknown track id {track_id!r}: no catalog track has it as its path "
            f"(absolute or under {str(self.root)!r}), file name or file stem"
        )


@dataclass
class GroundTruth:
    """Each query's relevant catalog rows, per kind of query, in the file's order."""

    captions: dict[str, set[int]]
    tags: dict[str, set[int]]


def read_ground_truth(path: Path, ids: TrackIds) -> GroundTruth:
    """Reads and checks the whole file: an unknown id or an empty query stops the run here."""
    found: dict[str, dict[str, set[int]]] = {kind: {} for kind in QUERY_KINDS}
    for kind, query, track_id, where in ground_truth_pairs(path):
        if not query.strip():
            raise InputError(f"{where}: empty {kind[:-1]}")
        found[kind].setdefault(query, set()).add(ids.row(track_id, where))
    if not any(found.values()):
        raise InputError(f"ground truth {str(path)!r} holds no captions and no tags")
    for tag, rows in found["tags"].items():
        if len(rows) == len(ids.paths):
            raise InputError(
                f"ground truth {str(path)!r}: tag {tag!r} is on every catalog track, "
                "so its ROC-AUC and PR-AUC are undefined"
            )
    return GroundTruth(**found)


def ground_truth_pairs(path: Path) -> list[tuple[str, str, str, str]]:
    """``(kind, query, track id, where)`` for every pair in a ``.json`` or ``.csv`` file."""
    what = "ground truth"
    if path.suffix.lower() == ".csv":
        header, rows = read_table(path, what, (("caption", "track"), ("tag", "track")))
        kind = f"{header[0]}s"
        return [(kind, query, track, f"{path}, line {line}") for line, (query, track) in rows]
    if path.suffix.lower() != ".json":
        raise InputError(f"ground truth {str(path)!r} must be a .csv or a .json file")
    data = read_json(path, what)
    if not isinstance(data, dict) or not set(data) <= set(QUERY_KINDS):
        raise InputError(
            f'ground truth {str(path)!r} must be a JSON object with "captions" and/or "tags"'
        )
    pairs = []
    for kind, queries in data.items():
        if not isinstance(queries, dict):
            raise InputError(f"ground truth {str(path)!r}: {kind!r} must map text to track ids")
        for query, tracks in queries.items():
            where = f"{path}: {kind}[{query!r}]"
            if not isinstance(tracks, list) or not tracks:
                raise InputError(f"{where} must be a non-empty list of track ids")
            for track in tracks:
                if not isinstance(track, str):
                    raise InputError(f"{where}: track id {track!r} is not a string")
                pairs.append((kind, query, track, where))
    return pairs


def relevance_matrix(queries: dict[str, set[int]], tracks: int) -> np.ndarray:
    relevant = np.zeros((len(queries), tracks), dtype=bool)
    for row, columns in enumerate(queries.values()):
        relevant[row, sorted(columns)] = True
    return relevant


def caption_report(queries: np.ndarray, tracks: np.ndarray, relevant: np.ndarray) -> dict:
    """Ranking metrics of caption embeddings against track embeddings (cosine), and per query
    the rank of its best-placed relevant track."""
    scores = unit_rows(queries) @ unit_rows(tracks).T
    ranks = relevant_ranks(scores, relevant)
    return {
        "queries": len(relevant),
        **ranking_metrics(scores, relevant),
        "per_query": [{"relevant": len(r), "first_relevant_rank": int(r[0])} for r in ranks],
    }


def tag_report(queries: np.ndarray, tracks: np.ndarray, relevant: np.ndarray) -> dict:
    """ROC-AUC and PR-AUC of each tag's cosine scores over all tracks, and their macro
    averages."""
    scores = unit_rows(queries) @ unit_rows(tracks).T
    per_tag = [
        {
            "positives": int(labels.sum()),
            "roc_auc": roc_auc(row, labels),
            "pr_auc": average_precision(row, labels),
        }
        for row, labels in zip(scores, relevant, strict=True)
    ]
    return {
        "queries": len(relevant),
        "roc_auc": float(np.mean([tag["roc_auc"] for tag in per_tag])),
        "pr_auc": float(np.mean([tag["pr_auc"] for tag in per_tag])),
        "per_query": per_tag,
    }


def evaluate_retrieval(
    source: EmbeddingSource, catalog_path: Path, ground_truth: Path, root: Path, tag_template: str
) -> dict:
    """The whole report: catalog and ground truth read and checked first, then the queries
    embedded (joint space, as the catalog) and scored."""
    catalog = NpzCatalog.load(catalog_path)
    if not catalog.paths:
        raise InputError(f"catalog {str(catalog_path)!r} is empty")
    tracks = catalog.matrix()
    if not np.isfinite(tracks).all():
        raise InputError(f"catalog {str(catalog_path)!r} holds non-finite embeddings")
    truth = read_ground_truth(ground_truth, TrackIds(catalog.paths, root))
    report: dict = {
        "catalog": str(catalog_path),
        "ground_truth": str(ground_truth),
        "tracks": len(catalog.paths),
    }
    kinds = (
        ("captions", list(truth.captions), truth.captions, caption_report),
        ("tags", [tag_template.format(tag=t) for t in truth.tags], truth.tags, tag_report),
    )
    for kind, texts, queries, measure in kinds:
        if not queries:
            continue
        embedded = unit_rows(source.text(texts, ["joint"])["joint"])
        if embedded.shape[1] != tracks.shape[1]:
            raise InputError(
                f"catalog {str(catalog_path)!r} holds {tracks.shape[1]}-d embeddings but the "
                f"model's joint space is {embedded.shape[1]}-d: index it with this model"
            )
        measured = measure(embedded, tracks, relevance_matrix(queries, len(tracks)))
        per_query = zip(queries, measured.pop("per_query"), strict=True)
        report[kind] = {**measured, "per_query": [{"query": q, **e} for q, e in per_query]}
    return report


def print_retrieval(report: dict) -> None:
    if "captions" in report:
        c = report["captions"]
        print(f"captions: {c['queries']} queries over {report['tracks']} tracks")
        print_table(
            ["", "R@1", "R@5", "R@10", "mAP@10", "MRR", "MedR"],
            [
                [
                    "text→music",
                    *(c[k] for k in ("recall@1", "recall@5", "recall@10", "map@10", "mrr")),
                    c["median_rank"],
                ]
            ],
        )
    if "tags" in report:
        t = report["tags"]
        print(f"tags: {t['queries']} tags over {report['tracks']} tracks (macro averages)")
        print_table(["", "ROC-AUC", "PR-AUC"], [["tag→music", t["roc_auc"], t["pr_auc"]]])
