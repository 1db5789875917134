"""AbC retrieval metrics (method.md §4, exact) and the service's closed-set variant (§4b).

Ranks come from the rank trick, not a full sort: the rank of a positive is
    1 + #negatives scoring >= it + #other positives ordered before it,
where positives are ordered by score descending, ties between positives broken by their index.
Tie rule [ours]: a negative that ties a positive is ranked ABOVE it (pessimistic), so a collapsed
encoder that scores everything equally gets no credit from ties.

AP = (1/P)·Σ_k k / r_k over the positives' sorted ranks r_1 < … < r_P; Recall@K = #{r_k ≤ K} / P."""
import numpy as np

RECALL_KS = (1, 5, 10, 100)


def positive_ranks(positive_scores: np.ndarray, negative_scores: np.ndarray) -> np.ndarray:
    """[P] and [N] scores -> [P] sorted 1-based ranks of the positives in the whole pool."""
    positives = np.sort(np.asarray(positive_scores, dtype=np.float64))[::-1]  # stable enough: ties equal
    negatives = np.sort(np.asarray(negative_scores, dtype=np.float64))
    # #negatives with score >= s: N - (index of first negative >= s).
    above = len(negatives) - np.searchsorted(negatives, positives, side="left")
    return 1 + above + np.arange(len(positives))


def average_precision(ranks: np.ndarray) -> float:
    ranks = np.sort(ranks)
    return float(np.mean(np.arange(1, len(ranks) + 1) / ranks))


def recall_at(ranks: np.ndarray, k: int) -> float:
    return float(np.mean(np.asarray(ranks) <= k))


def query_metrics(ranks: np.ndarray, ks=RECALL_KS) -> dict[str, float]:
    return {"ap": average_precision(ranks), **{f"recall@{k}": recall_at(ranks, k) for k in ks}}


def abc_query_metrics(query: np.ndarray, exemplars: np.ndarray, distractors: np.ndarray) -> dict[str, float]:
    """AbC: the pool is every distractor plus only this concept's exemplars. Vectors L2-normalised."""
    return query_metrics(positive_ranks(exemplars @ query, distractors @ query))


def service_query_metrics(query: np.ndarray, concept: str, exemplars: dict[str, np.ndarray],
                          distractors: np.ndarray) -> dict[str, float]:
    """Service: the pool is every concept's exemplars plus distractors; hits are own-concept exemplars."""
    others = [e for name, e in exemplars.items() if name != concept]
    negatives = np.concatenate([distractors @ query, *[e @ query for e in others]])
    return query_metrics(positive_ranks(exemplars[concept] @ query, negatives))


def mean_percent(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over queries, as a percentage (AbC reports percentages)."""
    if not rows:
        return {}
    return {name: 100.0 * float(np.mean([r[name] for r in rows])) for name in rows[0]}
