"""Calibrated attribution shares (method.md §5, after AbC's released code).

For one query with image scores s sorted descending:
    e_i = exp((s_i - s_1) * inv_tau),   p_i = ReLU(e_i + 0.001 b) / sum_j ReLU(e_j + 0.001 b)
A negative b cuts the tail to exactly zero. Both scalars are fitted by the training package.
"""
from dataclasses import asdict, dataclass

import numpy as np

# Uncalibrated default. AbC initialises inv_tau at 1 before fitting, but cosine scores of one query
# span only ~0.1-0.3, so 1 would spread the mass almost evenly; 20 gives readable shares until fitted.
DEFAULT_INV_TAU = 20.0


@dataclass(frozen=True)
class Calibration:
    inv_tau: float = DEFAULT_INV_TAU
    bias: float = 0.0
    fitted: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "Calibration":
        return cls(**data) if data else cls()


def image_shares(scores: np.ndarray, calibration: Calibration) -> np.ndarray:
    """[n] scores (any order) -> [n] probabilities over the same images (zero-sum -> all zero)."""
    if scores.size == 0:
        return np.zeros(0, dtype=np.float64)
    scores = scores.astype(np.float64)
    e = np.exp((scores - scores.max()) * calibration.inv_tau)
    clipped = np.maximum(e + 0.001 * calibration.bias, 0.0)
    total = clipped.sum()
    return clipped / total if total > 0 else clipped
