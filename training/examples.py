"""Example queries of an evaluation with the works the service would rank first, for the HTML report's grid:
a reader sees what the numbers mean (the right work at rank 1, a near miss, a distractor winning).

Service protocol (training.share_eval): every concept's exemplars and every distractor are registered works;
a work's score is its best image's cosine score, as core.ranking ranks works. Queries are picked round-robin
over concepts and query types (the first file of each), so the grid is the same for every encoder of a run
and the encoders can be compared query by query."""
from pathlib import Path

import numpy as np

from training.eval_data import EvalSet
from training.features import SetFeatures
from training.share_eval import DISTRACTOR, service_registry

TOP = 5


def pick_queries(eval_set: EvalSet, n: int) -> list[tuple[str, str, int]]:
    """(concept, query type, index) of up to `n` queries, spread over concepts first, then types."""
    slots = [(c, t, i) for i in range(max((len(ps) for by in eval_set.queries.values() for ps in by.values()),
                                          default=0))
             for t in sorted({t for by in eval_set.queries.values() for t in by})
             for c in eval_set.queries if i < len(eval_set.queries[c].get(t, []))]
    return slots[:n]


def _image_of(label: str, row: int, eval_set: EvalSet, first_row: dict[str, int]) -> str | None:
    if label.startswith(DISTRACTOR):
        index = int(label[len(DISTRACTOR):])
        return str(eval_set.distractors[index]) if index < len(eval_set.distractors) else None
    return str(eval_set.exemplars[label][row - first_row[label]])


def example_queries(eval_set: EvalSet, features: SetFeatures, n: int = 8, top: int = TOP) -> list[dict]:
    """JSON-able rows: the query (path, concept, type) and its `top` works (label, best image, score, right?)."""
    vectors, labels = service_registry(features)
    first_row: dict[str, int] = {}
    for row, label in enumerate(labels.tolist()):
        first_row.setdefault(label, row)
    rows = []
    for concept, qtype, index in pick_queries(eval_set, n):
        scores = vectors @ features.queries[concept][qtype][index]
        best: dict[str, int] = {}
        for row in np.argsort(-scores, kind="stable").tolist():
            best.setdefault(labels[row], row)
            if len(best) == top:
                break
        rows.append({"query": str(Path(eval_set.queries[concept][qtype][index])), "concept": concept, "type": qtype,
                     "top": [{"work": label, "image": _image_of(label, row, eval_set, first_row),
                              "score": float(scores[row]), "correct": label == concept}
                             for label, row in best.items()]})
    return rows
