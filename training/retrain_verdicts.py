"""`python -m training retrain --verdicts` (or `retrain-verdicts`): learn from reviewers' verdicts.

    python -m training retrain --verdicts [--held-out 0.2] [--eval-set DIR] [--tolerance 1.0] [--no-publish]
                                          [--unsupervised-images 256] [--unsupervised-weight 0.1]

1. read the verdicts given under the serving encoder and the stored vectors of every live work;
2. split them by query (held-out queries are never trained on) and fit AbC's two linear maps on the
   training side (training.verdict_mapper), from stored embeddings: no query image is needed. Where
   images exist (registered sources; query images kept because clients allowed training use), up to
   --unsupervised-images of them add the method's alignment + Infomax objective on the mapped space
   (training.verdict_images: two augmentations each, embedded once by the frozen serving encoder);
   with none, or --unsupervised-images 0, the fit is the verdict-only one;
3. gate head to head, serving vs candidate: on the held-out verdicts (the candidate must be better), on
   works nobody gave a verdict on (each such work's first image against its others, among all works: the
   candidate may not lose more than --tolerance points), and on --eval-set when given (an unseen benchmark,
   same tolerance);
4. write a mapped encoder artefact (core.mapping), derive its source vectors from the stored ones (no
   re-embedding), build its index and publish the pair. Undo with `python -m training rollback`."""
import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from common.db.models import Embedding
from common.db.session import new_session
from common.settings import get_settings
from common.storage import get_storage
from core.encoder import file_digest, load_encoder
from core.mapping import MAPPED_FORMAT, map_vectors
from indexing.store import fetch_live_vectors
from training.publish import publish_pair
from training.rebuild_index import rebuild_index
from training.verdict_images import load_image_views, pick_image_keys
from training.verdict_mapper import MapperConfig, fit_verdict_mapper, maps_of
from training.verdicts import VerdictData, held_out_metrics, load_verdict_data, rank_of_work, split_by_query


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training retrain --verdicts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verdicts", action="store_true", help=argparse.SUPPRESS)  # when called via retrain
    parser.add_argument("--held-out", type=float, default=0.2, help="share of queries kept for the gate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-set", help="an unseen labelled benchmark for the gate (folder format)")
    parser.add_argument("--tolerance", type=float, default=1.0,
                        help="points of mAP the candidate may lose on works without verdicts")
    parser.add_argument("--steps", type=int, default=MapperConfig.steps)
    parser.add_argument("--identity-weight", type=float, default=MapperConfig.identity_weight)
    parser.add_argument("--unsupervised-images", type=int, default=256,
                        help="at most this many stored images for the unsupervised term (0: verdicts only)")
    parser.add_argument("--unsupervised-weight", type=float, default=MapperConfig.unsupervised_weight,
                        help="weight of alignment + Infomax beside the verdict loss")
    parser.add_argument("--no-publish", action="store_true", help="stop after the gate")
    parser.add_argument("--force", action="store_true", help="publish even if the gate refuses")
    return parser.parse_args(argv)


def mapped(weight: np.ndarray):
    return lambda vectors: map_vectors(vectors, weight)


def map_works(work_vectors: dict, weight: np.ndarray) -> dict:
    return {w: map_vectors(v, weight) for w, v in work_vectors.items()}


def unreviewed_metrics(data: VerdictData, map_query, work_vectors: dict) -> dict:
    """Works with no confirmed verdict and >= 2 images: the first image is the work, the others query it
    among every work's first image. Measures what the maps did to works nobody reviewed."""
    reviewed = data.confirmed_works
    exemplars = {w: v[:1] for w, v in work_vectors.items()}
    ranks = [rank_of_work(map_query(q[None])[0], exemplars, w)
             for w, v in work_vectors.items() if w not in reviewed and len(v) >= 2 for q in data.work_vectors[w][1:]]
    ranks = np.asarray(ranks, np.float64)
    return {"n_queries": int(ranks.size), "map": float(100 * np.mean(1 / ranks)) if ranks.size else None}


def gate_report(data: VerdictData, test, maps: dict[str, np.ndarray]) -> dict:
    """Serving vs candidate on held-out verdicts and on unreviewed works (queries use the raw stored
    vectors under serving, the query map under the candidate)."""
    candidate_works = map_works(data.work_vectors, maps["real"])
    return {
        "held_out": {"serving": held_out_metrics(test, data.work_vectors),
                     "candidate": held_out_metrics(test, candidate_works, mapped(maps["synth"]))},
        "unreviewed": {"serving": unreviewed_metrics(data, lambda v: v, data.work_vectors),
                       "candidate": unreviewed_metrics(data, mapped(maps["synth"]), candidate_works)},
    }


def gate_passes(report: dict, tolerance: float) -> tuple[bool, list[str]]:
    reasons = []
    held = report["held_out"]
    if held["serving"]["map"] is None:
        reasons.append("no held-out confirmed verdicts to judge the candidate on")
    elif held["candidate"]["map"] <= held["serving"]["map"]:
        reasons.append(f"held-out verdicts: candidate {held['candidate']['map']:.1f} <= serving {held['serving']['map']:.1f}")
    for name in ("unreviewed", "benchmark"):
        part = report.get(name)
        if part and part["serving"]["map"] is not None and \
                part["candidate"]["map"] < part["serving"]["map"] - tolerance:
            reasons.append(f"{name}: candidate {part['candidate']['map']:.1f} < serving "
                           f"{part['serving']['map']:.1f} - {tolerance}")
    return not reasons, reasons


def write_mapped_artefact(out_dir: Path, base_spec: str, base, maps: dict[str, np.ndarray], meta: dict) -> Path:
    out_dir.mkdir(parents=True, exist_ok=False)
    torch.save({k: torch.from_numpy(v) for k, v in maps.items()}, out_dir / "maps.pt")
    encoder_id = f"{base.encoder_id}+verdicts@{file_digest(out_dir / 'maps.pt')}"
    (out_dir / "encoder.json").write_text(json.dumps({
        "format": MAPPED_FORMAT, "encoder_id": encoder_id, "base": base_spec, "base_encoder_id": base.encoder_id,
        "dim": int(maps["real"].shape[0]), "calibration": base.calibration.to_dict(), "training": meta}, indent=2))
    return out_dir


def copy_mapped_vectors(session, base_encoder_id: str, encoder_id: str, real_map: np.ndarray) -> int:
    """The candidate's source vectors from the stored ones of live works (paged into one array, as a worker
    loads them), so publishing re-embeds no image."""
    ids, stored = fetch_live_vectors(session, base_encoder_id, int(real_map.shape[1]))
    if len(ids) == 0:
        return 0
    for image_id, vector in zip(ids.tolist(), map_vectors(stored, real_map)):
        session.merge(Embedding(image_id=image_id, encoder_id=encoder_id, vector=vector.tobytes()))
    session.commit()
    return len(ids)


def benchmark_report(eval_set_path: str, serving_spec: str, artefact: Path, out_dir: Path) -> dict:
    from training.eval_data import read_eval_set
    from training.evaluate import evaluate
    report = evaluate(read_eval_set(eval_set_path), [serving_spec, str(artefact)], out_dir, command="retrain --verdicts")
    old, new = (e["service"]["all"]["ap"] for e in report["encoders"].values())
    return {"serving": {"map": old}, "candidate": {"map": new}, "eval_set": eval_set_path}


def fit_candidate(args: argparse.Namespace, stamp: str) -> tuple[Path, dict, dict[str, np.ndarray], str]:
    """Steps 1-3: read, split, fit, gate. Returns the artefact, the gate report, the maps, the base id."""
    from training.retrain import serving_encoder_spec
    settings = get_settings()
    serving_spec = serving_encoder_spec()
    base = load_encoder(serving_spec)
    with new_session() as session:
        data = load_verdict_data(session, encoder_id=base.encoder_id)
        keys = pick_image_keys(session, args.unsupervised_images if args.unsupervised_weight else 0, args.seed)
    images = load_image_views(get_storage(settings), base, keys, args.seed)
    train_q, test_q = split_by_query(data.queries, args.held_out, args.seed)
    print(f"[1/4] {len(data.queries)} reviewed queries under {base.encoder_id}: {len(train_q)} to train, "
          f"{len(test_q)} held out; {len(data.work_vectors)} works; unsupervised images: "
          f"{images.counts if images else 'none (verdicts only)'}")
    config = MapperConfig(steps=args.steps, identity_weight=args.identity_weight, seed=args.seed,
                          unsupervised_weight=args.unsupervised_weight)
    fit = fit_verdict_mapper(train_q, data.work_vectors, config, images)
    maps = maps_of(fit)
    print(f"[2/4] gating: serving vs candidate (losses, last steps: "
          f"{ {k: round(v, 4) for k, v in fit.losses['last'].items()} })")
    report = gate_report(data, test_q, maps)
    artefact = write_mapped_artefact(settings.artifacts_dir / "encoders" / f"verdicts-{stamp}", serving_spec, base,
                                     maps, {"config": vars(config), "n_train_queries": len(train_q),
                                            "n_held_out_queries": len(test_q), "split_seed": args.seed,
                                            "unsupervised_images": fit.images, "losses": fit.losses})
    if args.eval_set:
        report["benchmark"] = benchmark_report(args.eval_set, serving_spec, artefact,
                                               settings.data_dir / "training" / f"verdicts-{stamp}" / "eval")
    passed, reasons = gate_passes(report, args.tolerance)
    report |= {"passed": passed, "reasons": reasons, "artefact": str(artefact), "losses": fit.losses,
               "unsupervised_images": fit.images,
               "map": (report["held_out"]["candidate"]["map"] or 0) / 100,
               "serving_map": (report["held_out"]["serving"]["map"] or 0) / 100}
    (artefact / "gate.json").write_text(json.dumps(report, indent=2))
    return artefact, report, maps, base.encoder_id


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    settings = get_settings()
    torch.set_num_threads(settings.torch_threads)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    artefact, report, maps, base_encoder_id = fit_candidate(args, stamp)
    passed, reasons = report["passed"], report["reasons"]
    print(json.dumps({k: report[k] for k in ("held_out", "unreviewed", "passed", "reasons")}, indent=2))
    if args.no_publish or not (passed or args.force):
        if not passed:
            print("refused: " + "; ".join(reasons) + " (--force to publish anyway)")
        return 0 if passed else 1
    return publish_candidate(artefact, base_encoder_id, maps, report, settings, stamp)


def publish_candidate(artefact: Path, base_encoder_id: str, maps, report: dict, settings, stamp: str) -> int:
    encoder_id = json.loads((artefact / "encoder.json").read_text())["encoder_id"]
    with new_session() as session:
        copied = copy_mapped_vectors(session, base_encoder_id, encoder_id, maps["real"])
    print(f"[3/4] {copied} source vectors mapped from the stored ones; building the index")
    index_dir = rebuild_index(str(artefact), settings.artifacts_dir / "pairs" / f"verdicts-{stamp}" / "index")
    html = settings.data_dir / "training" / f"verdicts-{stamp}" / "eval" / "report.html"  # with --eval-set
    pair = publish_pair(str(artefact), index_dir, report=report, force=True,
                        html_report=html if html.is_file() else None)
    print(f"[4/4] published pair {pair.id}: encoder {pair.encoder_id}; undo with `python -m training rollback`")
    return 0
