"""`python -m training retrain` (what `docker compose run trainer` runs): train -> export + calibrate ->
evaluate against the serving encoder -> rebuild index -> publish, refusing a worse encoder unless forced.

    python -m training retrain [--preset default] [--eval-set DIR] [--force [--yes]] [key=value ...]
    python -m training retrain --verdicts [...]   # fit linear maps on reviewers' verdicts instead

Training data: the registered source images, the folders named in the config (synthetic_dirs), and,
when ATTRIB_COLLECT_QUERIES_FOR_TRAINING is on, the query images clients allowed. Evaluation: a labelled
set (--eval-set, folder or AbC format; e.g. the bench's evaluation half) or, without one, the registry
itself (each work's first image is its exemplar, the others are queries; this checks self-consistency,
not generalisation — pass a real set to gate releases)."""
import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from common.db import crud
from common.db.session import new_session
from common.settings import get_settings
from indexing.artifacts import resolve
from training.calibrate import calibrate_artefact
from training.checkpoint import load_checkpoint
from training.config import PRESETS, apply_overrides, load_config
from training.data import registered_works
from training.eval_data import EvalSet, read_eval_set
from training.evaluate import evaluate
from training.export import export_checkpoint
from training.html_report import REPORT_NAME, training_facts, write_html_report
from training.publish import publish_pair
from training.rebuild_index import rebuild_index
from training.train import train

GATE = ("service", "all", "ap")  # mean AP of the service protocol over all queries, in %


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training retrain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS))
    parser.add_argument("--config", help="JSON config file (then presets, then overrides)")
    parser.add_argument("--eval-set", help="labelled evaluation set (default: the registry itself)")
    parser.add_argument("--force", action="store_true",
                        help="publish even if it evaluates worse (asks for confirmation)")
    parser.add_argument("--yes", action="store_true", help="with --force: do not ask (scripts)")
    parser.add_argument("--no-publish", action="store_true", help="stop after evaluation")
    parser.add_argument("overrides", nargs="*", help="config key=value overrides")
    return parser.parse_args(argv)


def registry_eval_set() -> EvalSet:
    works = {name: paths for name, paths in registered_works().items() if len(paths) >= 2}
    if not works:
        raise SystemExit("no registered work has two images to evaluate with; pass --eval-set")
    return EvalSet("registry", {w: p[:1] for w, p in works.items()}, {w: {"photo": p[1:]} for w, p in works.items()})


def serving_encoder_spec() -> str:
    with new_session() as session:
        pair = crud.get_active_pair(session)
    return resolve(pair.encoder_uri, get_settings()) if pair else get_settings().encoder


def gate_value(entry: dict) -> float:
    protocol, qtype, metric = GATE
    return entry[protocol][qtype][metric]


def confirm_forced_publish(old: float, new: float, *, assume_yes: bool, ask=input, interactive=None) -> bool:
    """--force on a worse candidate: show the head-to-head numbers and ask (never silently). Without
    a terminal to ask on, only --yes publishes."""
    print(f"WARNING: the candidate is worse than the serving encoder: service mAP {new:.1f}% against "
          f"{old:.1f}% ({new - old:+.1f} points). Publishing switches every worker to it.")
    if assume_yes:
        return True
    if not (sys.stdin.isatty() if interactive is None else interactive):
        print("refusing to publish a worse encoder without confirmation: pass --yes as well")
        return False
    return ask("publish it anyway? type 'yes': ").strip().lower() == "yes"


def write_run_report(run_dir: Path, checkpoint: Path, report: dict, old: float, new: float) -> Path:
    """The run's one page: training (facts, losses) and the head-to-head evaluation, beside its outputs."""
    state = load_checkpoint(checkpoint)
    facts = {**training_facts(state["config"], state), "gate (service mAP)": f"serving {old:.1f}, candidate {new:.1f}"}
    return write_html_report(run_dir / REPORT_NAME, title=f"Retraining run {state['config']['run_name']}",
                             command="python -m training retrain", facts=facts, history=state["history"],
                             loss_png=run_dir / "loss_curve.png", evaluation=report, figures=report["files"])


def main(argv: list[str]) -> int:
    if "--verdicts" in argv:  # learn from reviewers' verdicts instead (training.retrain_verdicts)
        from training.retrain_verdicts import main as retrain_from_verdicts
        return retrain_from_verdicts(argv)
    args = parse_args(argv)
    settings = get_settings()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    config = load_config(args.preset, args.config, [])
    config = apply_overrides(config, ["use_registered_sources=true",
                                      f"use_collected_queries={str(settings.collect_queries_for_training).lower()}",
                                      f"run_name=retrain-{stamp}",
                                      f"out_dir={settings.data_dir / 'training' / stamp}", *args.overrides])
    run_dir = Path(config.out_dir)

    print(f"[1/5] training ({args.preset}) -> {run_dir}")
    checkpoint = train(config)
    print("[2/5] exporting and calibrating the encoder")
    artefact = export_checkpoint(checkpoint, settings.artifacts_dir / "encoders" / config.run_name)
    calibrate_artefact(artefact)
    print("[3/5] evaluating the candidate against the serving encoder")
    eval_set = read_eval_set(args.eval_set) if args.eval_set else registry_eval_set()
    serving = serving_encoder_spec()
    report = evaluate(eval_set, [serving, str(artefact)], run_dir / "eval", command="retrain")
    old, new = (gate_value(e) for e in report["encoders"].values())
    verdict = {"map": new / 100, "serving_map": old / 100, "eval_set": eval_set.name, "serving": serving}
    (run_dir / "verdict.json").write_text(json.dumps(verdict, indent=2))
    html = write_run_report(run_dir, checkpoint, report, old, new)
    print(f"      service mAP: serving {old:.1f}%  candidate {new:.1f}%  (report: {html})")
    if args.no_publish:
        return 0
    if new < old and not args.force:
        print("refused: the candidate is worse than the serving encoder; nothing published (--force to override)")
        return 1
    if new < old and not confirm_forced_publish(old, new, assume_yes=args.yes):
        print("not published")
        return 1
    print("[4/5] rebuilding the index with the candidate")
    index_dir = rebuild_index(str(artefact), settings.artifacts_dir / "pairs" / config.run_name / "index")
    print("[5/5] publishing")
    # The head-to-head comparison above is the gate; a stored score from another eval set is not comparable.
    pair = publish_pair(str(artefact), index_dir, report=verdict, force=True, html_report=html)
    print(f"published pair {pair.id}: encoder {pair.encoder_id}; workers switch before their next job. "
          f"Undo with `python -m training rollback`.")
    return 0
