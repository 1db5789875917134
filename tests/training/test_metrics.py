"""AbC metrics on hand-computed cases (exact equality)."""
import numpy as np
import pytest

from training.metrics import (abc_query_metrics, average_precision, mean_percent, positive_ranks, recall_at,
                              service_query_metrics)


def test_ranks_of_positives_among_distractors():
    # pool by score: d.95, p.9, d.7, p.4, d.1 -> positives at ranks 2 and 4
    ranks = positive_ranks(np.array([0.4, 0.9]), np.array([0.95, 0.7, 0.1]))
    assert ranks.tolist() == [2, 4]
    assert average_precision(ranks) == (1 / 2 + 2 / 4) / 2
    assert recall_at(ranks, 1) == 0.0
    assert recall_at(ranks, 2) == 0.5
    assert recall_at(ranks, 5) == 1.0


def test_ties_with_negatives_count_against_the_positive():
    # a distractor tying the positive is ranked above it (pessimistic rule)
    assert positive_ranks(np.array([0.5]), np.array([0.5, 0.2])).tolist() == [2]
    # a collapsed encoder: everything equal -> the positive is last
    assert positive_ranks(np.array([1.0]), np.ones(9)).tolist() == [10]


def test_tied_positives_get_distinct_consecutive_ranks():
    assert positive_ranks(np.array([0.8, 0.8, 0.8]), np.array([0.9])).tolist() == [2, 3, 4]
    assert average_precision(np.array([2, 3, 4])) == (1 / 2 + 2 / 3 + 3 / 4) / 3


def test_perfect_and_single_exemplar():
    assert average_precision(positive_ranks(np.array([0.9, 0.8]), np.array([0.1]))) == 1.0
    assert average_precision(np.array([4])) == 0.25


def unit(*v):
    v = np.array(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def test_abc_pool_excludes_other_concepts_but_service_pool_includes_them():
    query = unit(1, 0)
    exemplars = {"a": np.stack([unit(1, 0.5)]), "b": np.stack([unit(1, 0.1)])}  # b is closer to the query
    distractors = np.stack([unit(0, 1), unit(1, 2)])
    abc = abc_query_metrics(query, exemplars["a"], distractors)
    assert abc["ap"] == 1.0 and abc["recall@1"] == 1.0
    service = service_query_metrics(query, "a", exemplars, distractors)
    assert service["ap"] == 0.5 and service["recall@1"] == 0.0 and service["recall@5"] == 1.0


def test_mean_percent():
    rows = [{"ap": 1.0, "recall@1": 1.0}, {"ap": 0.5, "recall@1": 0.0}]
    assert mean_percent(rows) == pytest.approx({"ap": 75.0, "recall@1": 50.0})
    assert mean_percent([]) == {}
