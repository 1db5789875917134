"""bench.verdicts' scoring pieces on tiny features: identity maps change nothing, a map that removes a
shared query style helps, and the bootstrap interval brackets the mean difference."""
import numpy as np

from bench.verdicts import bootstrap_diff, group_mean, per_query_ap
from training.features import SetFeatures


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def features(style: float) -> SetFeatures:
    rng = np.random.default_rng(0)
    dim, centres = 16, unit(rng.standard_normal((4, 16)))
    shift = np.zeros(dim)
    shift[0] = style
    centres[:, 0] = 0  # the style direction is in no work
    centres[1, 0] = 0.9  # ... except one, which attracts every styled query
    exemplars = {f"c{i}": unit(centres[i:i + 1]).astype(np.float32) for i in range(4)}
    queries = {f"c{i}": {"t": unit(centres[i:i + 1] + shift + 0.05 * rng.standard_normal((3, dim))).astype(np.float32)}
               for i in range(4)}
    return SetFeatures(exemplars, queries, unit(rng.standard_normal((5, dim))).astype(np.float32))


def test_identity_maps_change_nothing_and_removing_the_style_helps():
    f = features(style=2.0)
    zero = per_query_ap(f)
    identity = {"real": np.eye(16, dtype=np.float32), "synth": np.eye(16, dtype=np.float32)}
    assert per_query_ap(f, identity) == zero
    drop_style = np.eye(16, dtype=np.float32)
    drop_style[0, 0] = 0
    better = per_query_ap(f, {"real": np.eye(16, dtype=np.float32), "synth": drop_style})
    subjects = {"c0", "c2", "c3"}
    assert group_mean(better, subjects).mean() > group_mean(zero, subjects).mean()


def test_bootstrap_interval_brackets_the_mean():
    rng = np.random.default_rng(1)
    base, cand = rng.uniform(0, 1, 200), rng.uniform(0, 1, 200) + 0.1
    low, high = bootstrap_diff(base, cand, 500, seed=0)
    assert low < 100 * (cand - base).mean() < high and low > 0
