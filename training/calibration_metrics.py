"""How far shares are from frequencies: the top share's expected calibration error (ECE, equal-mass
bins, bootstrap 95% interval), reliability bins, Brier scores, and how often `unattributed` exceeds the
true work's share. Inputs are per-query outcomes (training.share_eval.ShareOutcomes).

ECE = sum over bins of (bin size / n) * |mean top share - fraction of bins' queries whose top work is
right|, with bins of equal count over the sorted top shares (equal-width bins leave most bins empty
when shares cluster near 1). Reported in points (percent)."""
import numpy as np

BINS = 10
RESAMPLES = 1000


def _bins(confidence: np.ndarray, bins: int) -> list[np.ndarray]:
    order = np.argsort(confidence, kind="stable")
    return [chunk for chunk in np.array_split(order, min(bins, len(order))) if len(chunk)]


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> float:
    """In [0, 1]; equal-mass bins."""
    n = len(confidence)
    return float(sum(len(b) * abs(confidence[b].mean() - correct[b].mean()) for b in _bins(confidence, bins)) / n)


def bootstrap_interval(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS,
                       resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% interval of the ECE over queries resampled with replacement (bins re-formed)."""
    rng = np.random.default_rng(seed)
    draws = [expected_calibration_error(confidence[i], correct[i], bins)
             for i in (rng.integers(0, len(confidence), len(confidence)) for _ in range(resamples))]
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(low), float(high)


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> list[dict]:
    return [{"share": float(confidence[b].mean()), "accuracy": float(correct[b].mean()), "n": int(len(b))}
            for b in _bins(confidence, bins)]


def calibration_summary(outcomes, mask: np.ndarray | None = None, bins: int = BINS,
                        resamples: int = RESAMPLES) -> dict:
    """Metrics over the queries in `mask` (all by default). Percentages except the Brier scores."""
    mask = np.ones(len(outcomes.top_share), bool) if mask is None else mask
    share, correct = outcomes.top_share[mask], outcomes.correct[mask].astype(np.float64)
    low, high = bootstrap_interval(share, correct, bins, resamples)
    return {"n": int(mask.sum()), "top1": 100 * correct.mean(), "mean_top_share": 100 * share.mean(),
            "ece": 100 * expected_calibration_error(share, correct, bins), "ece_low": 100 * low, "ece_high": 100 * high,
            "brier_top": float(np.mean((share - correct) ** 2)), "brier": float(outcomes.brier[mask].mean()),
            "unattributed_over_true": 100 * float(np.mean(outcomes.unattributed[mask] > outcomes.true_share[mask])),
            "reliability": reliability_bins(share, correct, bins)}


def calibration_by_type(outcomes, bins: int = BINS, resamples: int = RESAMPLES) -> dict:
    """'all' first, then each query type."""
    table = {"all": calibration_summary(outcomes, None, bins, resamples)}
    for qtype in sorted(set(outcomes.query_type.tolist())):
        table[qtype] = calibration_summary(outcomes, outcomes.query_type == qtype, bins, resamples)
    return table
