"""Calibrated attribution shares (method.md §5, after AbC's released code).

For one query with image scores s sorted descending:
    e_i = exp((s_i - s_1) * inv_tau),   p_i = ReLU(e_i + 0.001 b) / sum_j ReLU(e_j + 0.001 b)
A negative b cuts the tail to exactly zero. Both scalars are fitted by the training package.

Where a worker takes them from (design.md §7): the active pair's `calibration`, else the encoder
artefact's, else the packaged default for that encoder (`default_calibration.json`, fitted on the
cross-context benchmark's traffic half), else the uncalibrated constants below. A calibration never
changes the ranking: every share is a monotone function of its image's score."""
import json
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path

import numpy as np

# Uncalibrated default. AbC initialises inv_tau at 1 before fitting, but cosine scores of one query
# span only ~0.1-0.3, so 1 would spread the mass almost evenly; 20 gives readable shares until fitted.
DEFAULT_INV_TAU = 20.0
UNCALIBRATED = "uncalibrated"
PACKAGED_DEFAULTS = Path(__file__).with_name("default_calibration.json")


@dataclass(frozen=True)
class Calibration:
    """Two scalars, and what they were fitted on (`fitted_on`, held-out `ece` in [0, 1], `n` queries)."""
    inv_tau: float = DEFAULT_INV_TAU
    bias: float = 0.0
    fitted: bool = False
    fitted_on: str = UNCALIBRATED
    ece: float | None = None
    n: int | None = None
    fitted_at: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "Calibration":
        """Unknown keys are ignored, so a newer writer never breaks an older reader."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known}) if data else cls()

    def summary(self) -> dict:
        """What a result shows: whether its shares are calibrated, and on what."""
        return {"fitted_on": self.fitted_on if self.fitted else UNCALIBRATED, "ece": self.ece}

    def applied(self) -> dict:
        """What a job row keeps: the scalars it used and their provenance."""
        return {"inv_tau": self.inv_tau, "bias": self.bias, **self.summary()}


@lru_cache
def _packaged() -> dict:
    return json.loads(PACKAGED_DEFAULTS.read_text()) if PACKAGED_DEFAULTS.is_file() else {}


def packaged_calibration(encoder_id: str) -> Calibration:
    """The shipped calibration for this exact encoder (its weights' digest), else uncalibrated."""
    return Calibration.from_dict(_packaged().get(encoder_id))


def image_shares(scores: np.ndarray, calibration: Calibration) -> np.ndarray:
    """[n] scores (any order) -> [n] probabilities over the same images (zero-sum -> all zero)."""
    if scores.size == 0:
        return np.zeros(0, dtype=np.float64)
    scores = scores.astype(np.float64)
    e = np.exp((scores - scores.max()) * calibration.inv_tau)
    clipped = np.maximum(e + 0.001 * calibration.bias, 0.0)
    total = clipped.sum()
    return clipped / total if total > 0 else clipped
