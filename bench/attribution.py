"""Does alignment + Infomax beat the zero-shot backbone, and does Infomax add to alignment alone?

    python -m bench.attribution --set bench/out/crossdomain --out bench/results/attribution [--preset default]

On the cross-context set built by `bench.make_crossdomain`: trains the encoder twice without labels
(alignment only, infomax_lambda=0; alignment + Infomax) on the registered exemplars plus the unlabeled
traffic half, then evaluates on the evaluation half (which training never sees), against the distractors:
zero-shot backbone, both trained encoders, and the supervised AbC-style linear baseline fitted on the
traffic half's labels (pairs the unsupervised method never gets). Writes report.json/.md, Recall@K plots,
and bench.json (configuration, wall times, machine)."""
import argparse
import json
import os
import platform
import random
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from training.config import PRESETS, apply_overrides, load_config
from training.eval_data import EvalSet, read_folder_set
from training.evaluate import ZERO_SHOT, evaluate
from training.export import export_checkpoint
from training.train import train

TRAFFIC = "traffic"
METHODS = {"align-only": ["infomax_lambda=0"], "align+infomax": []}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.attribution", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", type=Path, default=Path("bench/out/crossdomain"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/attribution"))
    parser.add_argument("--work", type=Path, default=Path("bench/out/attribution-runs"), help="checkpoints, artefacts")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS))
    parser.add_argument("--max-distractors", type=int, default=0, help="0 = all")
    parser.add_argument("overrides", nargs="*", help="config key=value for both trained methods")
    return parser.parse_args(argv)


def evaluation_half(root: Path, max_distractors: int) -> EvalSet:
    full = read_folder_set(root)  # concepts only: traffic/ and distractors/ have no exemplars
    concepts = list(full.exemplars)
    # A seeded sample, not the first N by path (which would be one or two sources only).
    distractors = (sorted(random.Random(0).sample(full.distractors, max_distractors))
                   if 0 < max_distractors < len(full.distractors) else full.distractors)
    return EvalSet(f"{root.name} (evaluation half)", {c: full.exemplars[c] for c in concepts},
                   {c: full.queries[c] for c in concepts}, distractors)


def traffic_pairs(root: Path, eval_set: EvalSet) -> EvalSet:
    """The traffic half with its held-aside labels: pairs for the supervised baseline only."""
    labels = json.loads((root / "traffic_labels.json").read_text())
    queries: dict[str, dict[str, list[Path]]] = {}
    for name, label in sorted(labels.items()):
        queries.setdefault(label["subject"], {}).setdefault(label["type"], []).append(root / TRAFFIC / name)
    return EvalSet("traffic half (labelled)", eval_set.exemplars, queries, eval_set.distractors)


def train_method(name: str, overrides: list[str], args, eval_set: EvalSet) -> tuple[str, dict]:
    exemplar_dirs = sorted({str(p.parent) for paths in eval_set.exemplars.values() for p in paths})
    config = load_config(args.preset, None, [])
    config = apply_overrides(config, [f"run_name={name.replace('+', '-')}", f"out_dir={args.work / name}",
                                      f"source_dirs={json.dumps(exemplar_dirs)}",
                                      f"synthetic_dirs={json.dumps([str(args.set / TRAFFIC)])}",
                                      *args.overrides, *overrides])
    started = time.time()
    artefact = export_checkpoint(train(config), args.work / "encoders" / name)  # dir name = report label
    return str(artefact), {"config": config.to_dict(), "train_seconds": round(time.time() - started, 1)}


def machine() -> dict:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "date": datetime.now(timezone.utc).isoformat()}


def main(argv=None) -> int:
    args = parse_args(argv)
    eval_set = evaluation_half(args.set, args.max_distractors)
    runs = {name: train_method(name, overrides, args, eval_set) for name, overrides in METHODS.items()}
    started = time.time()
    report = evaluate(eval_set, [ZERO_SHOT, *[artefact for artefact, _ in runs.values()]], args.out,
                      supervised_train=traffic_pairs(args.set, eval_set))
    bench = {"command": "python -m bench.attribution " + " ".join(argv or []), "machine": machine(),
             "eval_seconds": round(time.time() - started, 1), "set_manifest": json.loads((args.set / "manifest.json").read_text()),
             "methods": {name: info | {"artefact": artefact} for name, (artefact, info) in runs.items()}}
    (args.out / "bench.json").write_text(json.dumps(bench, indent=2))
    print(Path(report["files"]["markdown"]).read_text())
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv[1:]))
