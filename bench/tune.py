"""Tune the unsupervised encoder on the traffic half only (its held-aside labels), never on the
evaluation half: each named configuration is trained like bench.attribution and evaluated against
the zero-shot backbone on the labelled traffic queries with a seeded sample of the distractors.
Transductive: the encoders also trained on those traffic images (without labels), which if anything
favours them over the zero-shot backbone.

    python -m bench.tune --set bench/out/crossdomain --out bench/results/tuning [--distractors 1000]"""
import argparse
import json
import time
from pathlib import Path


from bench.attribution import evaluation_half, traffic_pairs, train_method
from training.evaluate import ZERO_SHOT, evaluate

CANDIDATES = {
    "default": [],
    "backbone-embedding": ["embed_from=backbone"],
    "low-lr": ["lr=0.0001"],
    "head-only": ["trainable=head"],
    "batch-infomax-l1": ["covariance=batch", "infomax_lambda=1.0"],
}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.tune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", type=Path, default=Path("bench/out/crossdomain"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/tuning"))
    parser.add_argument("--work", type=Path, default=Path("bench/out/tuning-runs"))
    parser.add_argument("--preset", default="default")
    parser.add_argument("--distractors", type=int, default=1000)
    parser.add_argument("--only", nargs="*", default=None, help="names from CANDIDATES")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.overrides = []
    eval_set = evaluation_half(args.set, args.distractors)  # exemplars + distractors only are used
    tuning_set = traffic_pairs(args.set, eval_set)
    names = args.only or list(CANDIDATES)
    runs = {name: train_method(name, CANDIDATES[name], args, eval_set) for name in names}
    started = time.time()
    report = evaluate(tuning_set, [ZERO_SHOT, *[a for a, _ in runs.values()]], args.out)
    summary = {name: {"overrides": CANDIDATES[name], "train_seconds": info["train_seconds"],
                      "service_ap_all": report["encoders"][name]["service"]["all"]["ap"]}
               for name, (_, info) in runs.items()}
    summary["zero-shot"] = {"service_ap_all": report["encoders"][ZERO_SHOT]["service"]["all"]["ap"]}
    (args.out / "tuning.json").write_text(json.dumps({"eval_seconds": round(time.time() - started, 1),
                                                      "candidates": summary}, indent=2))
    for name, row in summary.items():
        print(f"{name:<22} service AP (all) {row['service_ap_all']:.1f}")
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv[1:]))
