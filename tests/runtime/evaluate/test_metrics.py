"""The evaluation's arithmetic against values worked out by hand (and sklearn's AUCs)."""

from __future__ import annotations

import numpy as np
import pytest

from runtime import InputError
from runtime.evaluate.metrics import (
    average_precision,
    average_precision_at,
    bootstrap_interval,
    ranking_metrics,
    relevant_ranks,
    roc_auc,
    unit_rows,
)


def scores_placing(ranks: list[int], tracks: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores that rank the tracks in column order (column 0 first) and one relevant track
    per query at the given 1-based rank."""
    scores = np.tile(np.linspace(1.0, 0.0, tracks), (len(ranks), 1))
    relevant = np.zeros_like(scores, dtype=bool)
    relevant[np.arange(len(ranks)), np.array(ranks) - 1] = True
    return scores, relevant


def test_a_perfect_ranking_scores_one_everywhere():
    scores = np.eye(6) + 0.1  # each query's own track first
    metrics = ranking_metrics(scores, np.eye(6, dtype=bool))
    assert metrics == {
        "recall@1": 1.0,
        "recall@5": 1.0,
        "recall@10": 1.0,
        "map@10": 1.0,
        "mrr": 1.0,
        "median_rank": 1.0,
    }


def test_relevant_tracks_at_known_ranks_give_hand_computed_metrics():
    scores, relevant = scores_placing([1, 2, 7, 11], tracks=12)
    rng = np.random.default_rng(0)
    shuffle = rng.permutation(12)  # column order must not matter, only the scores
    metrics = ranking_metrics(scores[:, shuffle], relevant[:, shuffle])
    assert metrics["recall@1"] == pytest.approx(1 / 4)
    assert metrics["recall@5"] == pytest.approx(2 / 4)
    assert metrics["recall@10"] == pytest.approx(3 / 4)
    assert metrics["map@10"] == pytest.approx((1 + 1 / 2 + 1 / 7 + 0) / 4)
    assert metrics["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 7 + 1 / 11) / 4)
    assert metrics["median_rank"] == 4.5


def test_several_relevant_tracks_share_recall_and_average_precision():
    scores = np.linspace(1.0, 0.0, 12)[None]
    relevant = np.zeros((1, 12), dtype=bool)
    relevant[0, [1, 2, 11]] = True  # ranks 2, 3 and 12
    (ranks,) = relevant_ranks(scores, relevant)
    assert ranks.tolist() == [2, 3, 12]
    # precision 1/2 at rank 2 and 2/3 at rank 3; rank 12 is past k; divided by min(10, 3)
    assert average_precision_at(ranks, 10) == pytest.approx((1 / 2 + 2 / 3) / 3)
    assert average_precision_at(ranks, 2) == pytest.approx((1 / 2) / 2)
    metrics = ranking_metrics(scores, relevant)
    assert metrics["recall@1"] == 0.0
    assert metrics["recall@5"] == pytest.approx(2 / 3)
    assert metrics["mrr"] == pytest.approx(1 / 2)


def test_equal_scores_rank_in_column_order():
    relevant = np.array([[False, False, True]])
    assert relevant_ranks(np.full((1, 3), 0.5), relevant)[0].tolist() == [3]


def test_a_query_without_relevant_tracks_is_refused():
    with pytest.raises(ValueError, match="at least one relevant"):
        relevant_ranks(np.ones((2, 3)), np.array([[True, False, False], [False] * 3]))


def test_roc_auc_and_average_precision_of_a_hand_computed_case():
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    labels = np.array([True, False, True, False])
    # positive > negative in 3 of the 4 pairs (0.7 < 0.8 is the miss)
    assert roc_auc(scores, labels) == pytest.approx(3 / 4)
    # hits at ranks 1 and 3: precisions 1 and 2/3
    assert average_precision(scores, labels) == pytest.approx((1 + 2 / 3) / 2)


def test_tied_scores_count_half_in_roc_auc_and_share_a_threshold_in_pr_auc():
    assert roc_auc(np.array([0.5, 0.5]), np.array([True, False])) == 0.5
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    labels = np.array([False, True, False, True])
    # thresholds 0.9: P=0 R=0; 0.5: P=1/3 R=1/2; 0.1: P=1/2 R=1
    assert average_precision(scores, labels) == pytest.approx(1 / 2 * 1 / 3 + 1 / 2 * 1 / 2)
    # pairs: (0.5 vs 0.9) 0, (0.5 vs 0.5) 1/2, (0.1 vs 0.9) 0, (0.1 vs 0.5) 0
    assert roc_auc(scores, labels) == pytest.approx(0.5 / 4)


def test_aucs_match_sklearn_on_random_tied_scores():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(3)
    for _ in range(20):
        scores = rng.integers(0, 6, size=40) / 5.0  # many ties
        labels = rng.random(40) < 0.3
        labels[:2] = [True, False]
        assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))
        assert average_precision(scores, labels) == pytest.approx(
            average_precision_score(labels, scores)
        )


@pytest.mark.parametrize("labels", [[True, True], [False, False]])
def test_an_auc_without_both_classes_is_refused(labels):
    with pytest.raises(ValueError, match="both positive and negative"):
        roc_auc(np.array([0.1, 0.2]), np.array(labels))


def test_bootstrap_interval_is_deterministic_and_holds_the_accuracy():
    outcomes = np.random.default_rng(1).random(200) < 0.7
    first = bootstrap_interval(outcomes, resamples=2000, seed=5)
    assert bootstrap_interval(outcomes, resamples=2000, seed=5) == first
    assert bootstrap_interval(outcomes, resamples=2000, seed=6) != first
    low, high = first
    assert low < outcomes.mean() < high
    assert 0.05 < high - low < 0.2  # about ±1.96·sqrt(0.7·0.3/200) ≈ ±0.064


def test_bootstrap_interval_narrows_with_more_outcomes_and_level():
    small = np.array([True, False] * 10)
    large = np.array([True, False] * 1000)

    def width(outcomes: np.ndarray, level: float) -> float:
        low, high = bootstrap_interval(outcomes, 4000, level)
        return high - low

    assert width(large, 0.95) < width(small, 0.95)
    assert width(large, 0.5) < width(large, 0.95)


def test_bootstrap_interval_matches_resampling_the_outcomes():
    outcomes = np.random.default_rng(2).random(60) < 0.4
    draws = np.random.default_rng(9).integers(0, 60, size=(20000, 60))
    resampled = np.quantile(outcomes[draws].mean(axis=1), [0.025, 0.975])
    assert bootstrap_interval(outcomes, 20000) == pytest.approx(tuple(resampled), abs=0.02)


def test_bootstrap_interval_of_all_correct_is_a_point():
    assert bootstrap_interval(np.ones(30, dtype=bool)) == (1.0, 1.0)


@pytest.mark.parametrize(("resamples", "confidence"), [(0, 0.95), (100, 1.0), (100, 0.0)])
def test_bootstrap_options_out_of_range_are_input_errors(resamples, confidence):
    with pytest.raises(InputError):
        bootstrap_interval(np.ones(3, dtype=bool), resamples, confidence)


def test_unit_rows_leaves_zero_rows_at_zero():
    rows = unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(rows, [[0.6, 0.8], [0.0, 0.0]])
