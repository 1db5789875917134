"""From nearest source images to ranked works: a work scores as its best image, and its calibrated
share is the sum of its images' shares (method.md §5). Shares of images whose work is not returned
(beyond top_k, deleted, or unknown) make up the "unattributed" remainder."""
from dataclasses import dataclass
from typing import Hashable

import numpy as np

from core.calibration import Calibration, image_shares


@dataclass(frozen=True)
class RankedWork:
    work_id: Hashable
    score: float
    share: float
    best_image_id: int


def rank_works(image_ids: np.ndarray, scores: np.ndarray, work_of_image: dict[int, Hashable],
               top_k: int, calibration: Calibration) -> tuple[list[RankedWork], float]:
    """image_ids/scores [n] for one query; images missing from `work_of_image` are ignored as
    candidates (deleted works) but keep their probability mass, which becomes unattributed."""
    shares = image_shares(np.asarray(scores), calibration)
    best: dict[Hashable, RankedWork] = {}
    for image_id, score, share in zip(image_ids.tolist(), scores.tolist(), shares.tolist()):
        work_id = work_of_image.get(image_id)
        if work_id is None:
            continue
        current = best.get(work_id)
        if current is None:
            best[work_id] = RankedWork(work_id, score, share, image_id)
        else:
            best[work_id] = RankedWork(work_id, max(current.score, score), current.share + share,
                                       current.best_image_id if current.score >= score else image_id)
    ranked = sorted(best.values(), key=lambda w: w.score, reverse=True)[:top_k]
    unattributed = max(0.0, 1.0 - sum(w.share for w in ranked))
    return ranked, unattributed
