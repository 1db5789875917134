"""Compare encoders on an attribution set with AbC's protocol and the service's (method.md §4, §4b).

    python -m training evaluate bench/set --encoder builtin:efficientnet-lite0 \
        --encoder var/artifacts/encoders/align --encoder var/artifacts/encoders/align-infomax \
        [--supervised-train PAIRS_SET] --out var/eval/run1
    python -m training evaluate abc/test_imagenet_seen.json --image-root abc/ --distractors laion.txt ...

Feature extraction (training.features) is kept apart from scoring (score_features). Beside AP/Recall,
each encoder's shares (its own calibration, computed as the service does) get calibration metrics:
ECE of the top share with a bootstrap interval, reliability bins, Brier scores (training.share_eval,
training.calibration_metrics). Every run also writes report.html (training.html_report): Recall@K, the
reliability diagram and example queries with their top-5 works, self-contained."""
import argparse
from pathlib import Path

import numpy as np
import torch

from core.calibration import Calibration
from core.encoder import load_encoder
from training.calibration_metrics import calibration_by_type
from training.eval_data import EvalSet, read_eval_set
from training.examples import example_queries
from training.features import FeatureCache, SetFeatures, extract_set_features
from training.metrics import abc_query_metrics, mean_percent, service_query_metrics
from training.report import write_report
from training.share_eval import service_candidates, service_outcomes
from training.supervised import apply_linear_pair, fit_linear_pair

ZERO_SHOT = "builtin:efficientnet-lite0"


def score_features(features: SetFeatures, calibration: Calibration | None = None, top_k: int = 10,
                   hits_per_work: int = 4) -> dict:
    """Per query type (and 'all'): mean AbC and service metrics in %, the query counts, and (given the
    encoder's calibration) how well the service's shares are calibrated."""
    abc, service = {}, {}
    for concept, by_type in features.queries.items():
        for qtype, queries in by_type.items():
            for query in queries:
                row_abc = abc_query_metrics(query, features.exemplars[concept], features.distractors)
                row_service = service_query_metrics(query, concept, features.exemplars, features.distractors)
                for table, row in ((abc, row_abc), (service, row_service)):
                    table.setdefault(qtype, []).append(row)
                    table.setdefault("all", []).append(row)
    scored = {"abc": {t: mean_percent(rows) for t, rows in sorted(abc.items())},
              "service": {t: mean_percent(rows) for t, rows in sorted(service.items())},
              "n_queries": {t: len(rows) for t, rows in sorted(abc.items())}}
    if calibration is not None:
        table, types = service_candidates(features, top_k * hits_per_work)
        scored["calibration"] = {"calibration": calibration.to_dict(), "by_type": calibration_by_type(
            service_outcomes(table, types, calibration, top_k))}
    return scored


def load_distractor_features(specs: list[str]) -> dict[str, np.ndarray]:
    """'ENCODER_SPEC=features.npy' -> precomputed, L2-normalised distractor rows for that encoder."""
    out = {}
    for item in specs:
        spec, _, path = item.rpartition("=")
        rows = np.load(path).astype(np.float32)
        out[spec] = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return out


def evaluate(eval_set: EvalSet, encoder_specs: list[str], out_dir: str | Path,
             supervised_train: EvalSet | None = None, distractor_features: dict | None = None,
             device: str = "cpu", supervised_steps: int = 300, n_examples: int = 8, command: str = "evaluate") -> dict:
    """Scores every encoder, writes report.json/.md, the PNGs and report.html (training.html_report) to
    `out_dir`. `n_examples`: queries shown with their top-5 works in the report's grid."""
    cache, results = FeatureCache(), {}
    distractor_features = distractor_features or {}
    for spec in encoder_specs:
        encoder = load_encoder(spec, device)
        features = extract_set_features(encoder, eval_set, cache, distractor_features.get(spec))
        results[_label(spec)] = {"spec": spec, "encoder_id": encoder.encoder_id,
                                 **score_features(features, encoder.calibration),
                                 "examples": example_queries(eval_set, features, n_examples)}
    if supervised_train is not None:
        results["supervised-linear"] = supervised_baseline(eval_set, supervised_train, cache, device,
                                                           distractor_features.get(ZERO_SHOT), supervised_steps,
                                                           n_examples)
    report = {"dataset": eval_set.name, "n_concepts": len(eval_set.exemplars),
              "n_distractors": len(eval_set.distractors), "encoders": results}
    report["files"] = {k: str(v) for k, v in write_report(report, out_dir, command).items()}
    return report


def supervised_baseline(eval_set: EvalSet, train_set: EvalSet, cache: FeatureCache, device: str,
                        distractors: np.ndarray | None, steps: int = 300, n_examples: int = 8) -> dict:
    """AbC-style linear maps on frozen zero-shot features, trained on `train_set`'s pairs."""
    encoder = load_encoder(ZERO_SHOT, device)
    model = fit_linear_pair(extract_set_features(encoder, train_set, cache), steps=steps)
    test = apply_linear_pair(model, extract_set_features(encoder, eval_set, cache, distractors))
    return {"spec": f"supervised-linear on {ZERO_SHOT}", "encoder_id": f"supervised-linear({encoder.encoder_id})",
            "trained_on": train_set.name, "steps": steps, **score_features(test),
            "examples": example_queries(eval_set, test, n_examples)}


def _label(spec: str) -> str:
    return Path(spec).name if Path(spec).is_dir() else spec


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m training evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="folder-format root, or an AbC split .json")
    parser.add_argument("--encoder", action="append", default=[], help=f"repeatable; default {ZERO_SHOT}")
    parser.add_argument("--out", default="var/eval/latest")
    parser.add_argument("--image-root", help="AbC format: root the JSON's paths are relative to")
    parser.add_argument("--distractors", help="AbC format: distractor path list (text or JSON)")
    parser.add_argument("--distractor-features", action="append", default=[], metavar="SPEC=FILE.npy",
                        help="precomputed distractor features for one encoder (instead of images)")
    parser.add_argument("--supervised-train", help="a labelled set (either format) to fit the supervised baseline")
    parser.add_argument("--supervised-steps", type=int, default=300)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--examples", type=int, default=8, help="example queries in report.html's grid")
    args = parser.parse_args(argv)
    from common.settings import get_settings
    torch.set_num_threads(get_settings().torch_threads)
    eval_set = read_eval_set(args.dataset, args.image_root, args.distractors)
    train_set = read_eval_set(args.supervised_train) if args.supervised_train else None
    report = evaluate(eval_set, args.encoder or [ZERO_SHOT], args.out, train_set,
                      load_distractor_features(args.distractor_features), args.device, args.supervised_steps,
                      args.examples)
    print(Path(report["files"]["markdown"]).read_text())
    return report
