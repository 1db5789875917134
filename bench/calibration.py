"""Are the shares calibrated? Today's constants vs. fitted calibrations, on the cross-context benchmark.

    python -m bench.calibration --set bench/out/crossdomain --out bench/results/calibration \
        [--write-default core/default_calibration.json]

Zero-shot default encoder only (no training). Shares are computed as the service does (service protocol:
every exemplar and distractor is a registered work; core.ranking.rank_works on the top_k x
image_hits_per_work nearest images) on the evaluation half. Rows: (1) today's uncalibrated constants;
(2) fitted on pseudo-pairs from the registered works, sampled from their stored vectors, exactly as
`python -m training calibrate` does for the serving pair (the headline); (3) fitted on the labelled
traffic half (the packaged default). Features are cached in OUT_CACHE, so a re-run embeds nothing."""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from bench.attribution import evaluation_half, machine, traffic_pairs
from core.calibration import Calibration
from core.encoder import load_encoder
from training.calibrate import fit_and_check, pseudo_pair_source
from training.calibration_metrics import calibration_by_type
from training.calibration_report import write_calibration_report
from training.evaluate import ZERO_SHOT, score_features
from training.features import FeatureCache, extract_set_features, open_rgb
from training.pseudo_pairs import (
    POOL, QUERIES, Registry, augmented_queries, drift_to_traffic, pseudo_pair_candidates, sample_rows,
)
from training.share_eval import service_candidates, service_outcomes, service_registry

TOP_K, HITS_PER_WORK = 10, 4  # the service defaults (settings.default_top_k, image_hits_per_work)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.calibration", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", type=Path, default=Path("bench/out/crossdomain"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/calibration"))
    parser.add_argument("--cache", type=Path, default=Path("bench/out/calibration-features.npz"))
    parser.add_argument("--max-distractors", type=int, default=1000,
                        help="seeded sample of the distractors (0 = all 6,000; embedding them all is ~1 h on 2 busy cores)")
    parser.add_argument("--queries", type=int, default=QUERIES)
    parser.add_argument("--pool", type=int, default=POOL)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples for the ECE interval")
    parser.add_argument("--write-default", type=Path, help="write the traffic-half fit as the packaged default")
    return parser.parse_args(argv)


def embed_in_stages(encoder, eval_set, traffic_set, cache: FeatureCache, cache_path: Path):
    """Queries first, then distractors in chunks, saving the cache after each: a killed run loses little."""
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    def queries(s):
        return [p for by_type in s.queries.values() for ps in by_type.values() for p in ps]
    distractors = list(eval_set.distractors)
    stages = [[p for ps in eval_set.exemplars.values() for p in ps] + queries(eval_set), queries(traffic_set),
              *[distractors[i:i + 250] for i in range(0, len(distractors), 250)]]
    for paths in stages:
        cache.embed_paths(encoder, paths)
        cache.save(cache_path)
    return extract_set_features(encoder, eval_set, cache), extract_set_features(encoder, traffic_set, cache)


def pseudo_pair_fit(encoder, eval_set, features, traffic_top1, cache: FeatureCache, args,
                    drift: bool = True) -> Calibration:
    """As `python -m training calibrate` does for the serving pair, with the evaluation half's registry
    (exemplars + distractors) as the stored vectors and the unlabelled traffic half as recent queries."""
    vectors, works = service_registry(features)
    paths = [p for c in features.exemplars for p in eval_set.exemplars[c]] + list(eval_set.distractors)
    query_rows, pool_rows = sample_rows(works.tolist(), args.queries, args.pool, args.seed)
    registry = Registry(vectors[pool_rows], works[pool_rows])
    position = {row: i for i, row in enumerate(pool_rows)}
    queries = cached_augmented(encoder, [paths[r] for r in query_rows], cache, args)
    if drift:
        queries = drift_to_traffic(queries, registry, traffic_top1, args.seed)
    table = pseudo_pair_candidates(queries, [position[r] for r in query_rows], registry, TOP_K * HITS_PER_WORK)
    source = pseudo_pair_source(len(query_rows), len(traffic_top1) if drift else 0, registry)
    return fit_and_check(table, source + " (cross-context benchmark registry)", TOP_K, args.seed)


def cached_augmented(encoder, paths: list, cache: FeatureCache, args):
    """Augmented re-embeddings, cached under a pseudo encoder id (same seed and sample -> same rows)."""
    key = f"{encoder.encoder_id}#augmented-seed{args.seed}-n{len(paths)}"
    if all((key, str(p)) in cache._rows for p in paths):
        return np.stack([cache._rows[(key, str(p))] for p in paths])
    rows = augmented_queries(encoder, [open_rgb(p) for p in paths], args.seed)
    cache._rows.update({(key, str(p)): row for p, row in zip(paths, rows)})
    cache.save(args.cache)
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(2)
    started = time.time()
    eval_set = evaluation_half(args.set, args.max_distractors)
    encoder, cache = load_encoder(ZERO_SHOT), FeatureCache.load(args.cache)
    features, traffic = embed_in_stages(encoder, eval_set, traffic_pairs(args.set, eval_set), cache, args.cache)
    hits = TOP_K * HITS_PER_WORK
    traffic_table, _ = service_candidates(traffic, hits)
    traffic_top1 = traffic_table.scores[:, 0]  # unlabelled: the traffic queries' best scores only
    rows = {"uncalibrated (today: inv_tau 20, b 0)": Calibration(),
            "pseudo-pairs from the registered works": pseudo_pair_fit(
                encoder, eval_set, features, traffic_top1, cache, args),
            "traffic half (labelled; packaged default)": fit_and_check(
                traffic_table, "labelled: cross-context benchmark traffic half "
                f"({sum(len(q) for t in traffic.queries.values() for q in t.values())} queries)", TOP_K, args.seed),
            "ablation: pseudo-pairs, not drifted": pseudo_pair_fit(
                encoder, eval_set, features, traffic_top1, cache, args, drift=False)}
    table, types = service_candidates(features, hits)
    outcomes = {label: service_outcomes(table, types, c, TOP_K) for label, c in rows.items()}
    rankings = [o.ranked for o in outcomes.values()]
    report = {"dataset": eval_set.name, "encoder_id": encoder.encoder_id, "top_k": TOP_K, "hits": hits,
              "n_works": len(eval_set.exemplars) + len(eval_set.distractors),
              "ranking_identical": all(r == rankings[0] for r in rankings),
              "service_map": score_features(features)["service"]["all"]["ap"],
              "rows": {label: {"calibration": rows[label].to_dict(),
                               "by_type": calibration_by_type(o, resamples=args.resamples)}
                       for label, o in outcomes.items()},
              "command": "python -m bench.calibration " + " ".join(argv or []), "machine": machine(),
              "seconds": round(time.time() - started, 1),
              "note": "shared 2-core machine (8 helpers at once): timings are noisy"}
    files = write_calibration_report(report, args.out)
    if args.write_default:
        default = rows["traffic half (labelled; packaged default)"]
        args.write_default.write_text(json.dumps({encoder.encoder_id: default.to_dict()}, indent=2) + "\n")
    print(Path(files["markdown"]).read_text())
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv[1:]))
