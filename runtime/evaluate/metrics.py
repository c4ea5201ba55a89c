"""The evaluation's arithmetic, numpy only: ranking metrics for caption queries, ROC-AUC and
PR-AUC for tag queries, and a bootstrap interval for an accuracy.

Kept free of files and models so that every number can be pinned by hand-made inputs."""

from __future__ import annotations

import numpy as np

from runtime.errors import InputError


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (all-zero rows stay zero), so that dot products are cosines."""
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)


def relevant_ranks(scores: np.ndarray, relevant: np.ndarray) -> list[np.ndarray]:
    """For each query (row), the 1-based ranks of its relevant items, ascending.

    Items are ranked by descending score; equal scores keep their column order, so results
    are deterministic. ``relevant`` is a boolean matrix of the same shape; every row needs
    at least one relevant item."""
    scores, relevant = np.asarray(scores), np.asarray(relevant, dtype=bool)
    if scores.shape != relevant.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and relevant {relevant.shape} must be equal 2-d")
    if not relevant.any(axis=1).all():
        raise ValueError("every query needs at least one relevant item")
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked = np.take_along_axis(relevant, order, axis=1)
    return [np.flatnonzero(row) + 1 for row in ranked]


def recall_at(ranks: np.ndarray, k: int) -> float:
    """The share of one query's relevant items found in its top ``k`` (with a single relevant
    item: 1 if it is in the top ``k``, else 0)."""
    return float(np.count_nonzero(ranks <= k) / len(ranks))


def average_precision_at(ranks: np.ndarray, k: int) -> float:
    """AP@k of one query: the precision at each relevant item within the top ``k``, summed and
    divided by ``min(k, number of relevant items)`` (1/rank for a single relevant item)."""
    found = ranks[ranks <= k]
    hits = np.arange(1, len(found) + 1)
    return float(np.sum(hits / found) / min(k, len(ranks)))


def ranking_metrics(scores: np.ndarray, relevant: np.ndarray) -> dict[str, float]:
    """Recall@1/5/10, mAP@10, MRR and median rank (of each query's first relevant item),
    averaged over the queries (rows) of a score matrix."""
    ranks = relevant_ranks(scores, relevant)
    first = np.array([r[0] for r in ranks])
    return {
        "recall@1": float(np.mean([recall_at(r, 1) for r in ranks])),
        "recall@5": float(np.mean([recall_at(r, 5) for r in ranks])),
        "recall@10": float(np.mean([recall_at(r, 10) for r in ranks])),
        "map@10": float(np.mean([average_precision_at(r, 10) for r in ranks])),
        "mrr": float(np.mean(1.0 / first)),
        "median_rank": float(np.median(first)),
    }


def check_binary_labels(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must be equal 1-d")
    if labels.all() or not labels.any():
        raise ValueError("an AUC needs both positive and negative items")
    return scores, labels


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a random positive outscores a random
    negative, ties counting one half (Mann–Whitney U over average ranks)."""
    scores, labels = check_binary_labels(scores, labels)
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    average_rank = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    positives = np.count_nonzero(labels)
    negatives = len(labels) - positives
    u = average_rank[labels].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision–recall curve as average precision: the precision at each
    distinct score threshold, weighted by the recall it adds (equal scores share a threshold)."""
    scores, labels = check_binary_labels(scores, labels)
    order = np.argsort(-scores, kind="stable")
    ordered, hits = scores[order], labels[order]
    last_of_threshold = np.r_[np.flatnonzero(np.diff(ordered)), len(ordered) - 1]
    true_positives = np.cumsum(hits)[last_of_threshold]
    precision = true_positives / (last_of_threshold + 1)
    recall = true_positives / true_positives[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def check_bootstrap(resamples: int, confidence: float) -> None:
    if resamples < 1:
        raise InputError(f"the number of bootstrap resamples must be at least 1, got {resamples}")
    if not 0.0 < confidence < 1.0:
        raise InputError(f"the confidence level must be above 0 and below 1, got {confidence}")


def bootstrap_interval(
    outcomes: np.ndarray, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the accuracy of 0/1 ``outcomes``.

    Resampling n outcomes with replacement gives a success count that is exactly
    Binomial(n, accuracy), so each resample is drawn as one binomial number: the same
    distribution as index resampling, in O(resamples) memory whatever n is."""
    check_bootstrap(resamples, confidence)
    outcomes = np.asarray(outcomes, dtype=bool)
    if outcomes.size == 0:
        raise ValueError("a bootstrap interval needs at least one outcome")
    n = outcomes.size
    accuracies = np.random.default_rng(seed).binomial(n, outcomes.mean(), size=resamples) / n
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(accuracies, [tail, 1.0 - tail])
    return float(low), float(high)


def truth_ranks(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Each row's rank of its true column: 1 + the other columns scoring at least as much,
    so a tie counts against the truth (a tie fails)."""
    scores, truth = np.asarray(scores, dtype=np.float64), np.asarray(truth)
    own = scores[np.arange(len(truth)), truth][:, None]
    return (scores >= own).sum(axis=1)  # the true column itself counts as 1


def top_k_accuracy(scores: np.ndarray, truth: np.ndarray, k: int) -> float:
    """The share of rows whose true column is among their ``k`` best (ties fail)."""
    return float(np.mean(truth_ranks(scores, truth) <= k))


def predicted_classes(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Each row's best column; where the true column shares the best score with another,
    that other (the tie fails), so accuracy and top-1 agree."""
    scores = np.asarray(scores, dtype=np.float64)
    best = scores.max(axis=1, keepdims=True)
    tied = scores == best
    tied[np.arange(len(truth)), truth] &= tied.sum(axis=1) == 1
    return tied.argmax(axis=1)


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class, counts."""
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    return confusion


def weighted_f1(confusion: np.ndarray) -> float:
    """Per-class F1 weighted by the class's rows (scikit-learn's ``average="weighted"``; a
    class never predicted, or never true, has F1 0)."""
    hits = np.diag(confusion).astype(np.float64)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    denominator = support + predicted
    f1 = np.divide(2 * hits, denominator, out=np.zeros_like(hits), where=denominator > 0)
    return float(np.sum(f1 * support) / support.sum())


def classification_metrics(scores: np.ndarray, truth: np.ndarray, top: int = 5) -> dict:
    """Zero-shot metrics of a score matrix (rows: items, columns: classes; every class has
    rows): top-1…``top`` accuracy, balanced accuracy, weighted F1, macro ROC-AUC and macro
    average precision of the scores against one-hot labels, per-class accuracy, confusion."""
    scores, truth = np.asarray(scores, dtype=np.float64), np.asarray(truth)
    classes = scores.shape[1]
    predicted = predicted_classes(scores, truth)
    confusion = confusion_matrix(truth, predicted, classes)
    per_class = np.diag(confusion) / confusion.sum(axis=1)
    one_hot = truth[:, None] == np.arange(classes)[None, :]
    metrics = {f"top{k}": top_k_accuracy(scores, truth, k) for k in range(1, min(top, classes) + 1)}
    return metrics | {
        "balanced_accuracy": float(per_class.mean()),
        "weighted_f1": weighted_f1(confusion),
        "roc_auc": float(np.mean([roc_auc(scores[:, c], one_hot[:, c]) for c in range(classes)])),
        "average_precision": float(
            np.mean([average_precision(scores[:, c], one_hot[:, c]) for c in range(classes)])
        ),
        "per_class_accuracy": per_class.tolist(),
        "confusion": confusion.tolist(),
        "predicted": predicted.tolist(),
    }
