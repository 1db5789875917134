"""Do reviewers' verdicts make attribution better? Reviewers played against a running stack.

    python -m bench.verdicts --set bench/out/crossdomain --out bench/results/verdicts [--seeds 0 1 2]

On the cross-context set (bench.make_crossdomain): a real uvicorn API and worker on loopback, its own
SQLite database; the 30 subjects' exemplars (and --catalogue-distractors distractor images, so the
catalogue is not only the subjects) are registered through the API; every traffic-half query is
attributed through the API. A fixed half of the subjects (seeded by --subject-seed) is "reviewed": for a
fraction (10/20/50%) of those subjects' traffic queries, drawn by the run's seed, a reviewer key POSTs
`confirm` on the true work and `reject` on a wrong top-1 match, through the API. The other half gets no
verdict. Then `retrain --verdicts` fits the maps and gates them (training.retrain_verdicts.fit_candidate,
the command's own code, without publishing; with its unsupervised term on up to --unsupervised-images
registered images at --unsupervised-weight, since the catalogue's images are in the stack's storage; the
traffic is not kept for training), and the evaluation half (never seen by anything above) is
scored with the service protocol against the benchmark's distractors: zero-shot vs the candidate, on
subjects with verdicts and subjects without, with bootstrap 95% intervals over queries.

The mapped encoder is the serving encoder followed by two linear maps, so its vectors are computed here
from the zero-shot features (core.mapping.map_vectors: exactly what MappedModel outputs)."""
import argparse
import json
import os
import platform
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
FRACTIONS = (0.1, 0.2, 0.5)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.verdicts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", type=Path, default=Path("bench/out/crossdomain"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/verdicts"))
    parser.add_argument("--work", type=Path, default=Path("bench/out/verdicts-stack"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    parser.add_argument("--subject-seed", type=int, default=0)
    parser.add_argument("--catalogue-distractors", type=int, default=200)
    parser.add_argument("--eval-distractors", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=300)
    # passed to `retrain --verdicts`: the unsupervised term on the registered images (0 images: verdicts only)
    parser.add_argument("--unsupervised-images", type=int, default=256)
    parser.add_argument("--unsupervised-weight", type=float, default=0.1)
    parser.add_argument("--bootstrap", type=int, default=1000)
    return parser.parse_args(argv)


# ---------------------------------------------------------------- the stack and the reviewers

class Reviewers:
    """Drives the stack through its HTTP API only."""

    def __init__(self, url: str, keys: dict[str, str]):
        self.url, self.keys = url, keys
        self.http = httpx.Client(base_url=url, timeout=60)

    def _auth(self, role: str) -> dict:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def register(self, title: str, paths: list[Path]) -> str:
        files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]
        response = self.http.post("/sources", headers=self._auth("admin"), files=files,
                                  data={"title": title, "rights_holder": "bench"})
        response.raise_for_status()
        return response.json()["id"]

    def wait_searchable(self, timeout: float = 1800) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            offset, pending = 0, 0
            while True:
                page = self.http.get("/sources", headers=self._auth("admin"),
                                     params={"limit": 100, "offset": offset}).json()
                pending += sum(not w["searchable"] for w in page["data"])
                offset += 100
                if offset >= page["count"]:
                    break
            if not pending:
                return
            time.sleep(2)
        raise RuntimeError("works never became searchable")

    def attribute(self, path: Path) -> dict:
        response = self.http.post("/attribute", headers=self._auth("attributor"), params={"wait": 30, "top_k": 10},
                                  files={"image": (path.name, path.read_bytes(), "image/jpeg")})
        job = response.json()
        while job["status"] not in ("done", "failed"):
            time.sleep(0.5)
            job = self.http.get(f"/attribute/{job['id']}", headers=self._auth("attributor")).json()
        return job

    def verdict(self, job_id: str, work_id: str, kind: str) -> None:
        response = self.http.post(f"/attribute/{job_id}/verdicts", headers=self._auth("reviewer"),
                                  json={"verdict": kind, "work_id": work_id})
        response.raise_for_status()


def start_stack(work: Path):
    from bench.soak_stack import Stack, create_keys, stack_env
    from common.apikeys import create_key
    from common.db.models import Scope
    from common.db.schema import reset_schema
    from common.db.session import new_session
    from common.db import session as db_session
    from common.settings import get_settings
    work.mkdir(parents=True, exist_ok=True)
    env = stack_env("sqlite", work)
    os.environ.update(env)  # this process reads the same database for retrain
    for cached in (get_settings, db_session.get_engine, db_session.get_sessionmaker):
        cached.cache_clear()
    reset_schema(env["ATTRIB_DATABASE_URL"])
    keys = create_keys(env["ATTRIB_DATABASE_URL"])
    with new_session() as session:
        keys["reviewer"] = create_key(session, name="bench reviewer", scope=Scope.reviewer)[1]
        session.commit()
    return Stack(env, work).start(), keys


def play_traffic(reviewers: Reviewers, root: Path, work_of: dict[str, str]) -> list[dict]:
    """Attribute every traffic query once; remember its label and top-1 (for a reviewer's rejection)."""
    labels = json.loads((root / "traffic_labels.json").read_text())
    jobs = []
    for n, (name, label) in enumerate(sorted(labels.items())):
        job = reviewers.attribute(root / "traffic" / name)
        top = job["matches"][0]["work_id"] if job.get("matches") else None
        jobs.append({"job_id": job["id"], "subject": label["subject"], "type": label["type"], "top1": top})
        if n % 50 == 0:
            print(f"  attributed {n + 1}/{len(labels)}")
    return jobs


def give_verdicts(reviewers: Reviewers, jobs: list[dict], reviewed: set[str], fraction: float, seed: int,
                  work_of: dict[str, str]) -> int:
    from common.db.models import Verdict
    from common.db.session import new_session
    with new_session() as session:  # each run starts with no verdicts
        session.query(Verdict).delete()
        session.commit()
    pool = [j for j in jobs if j["subject"] in reviewed]
    chosen = random.Random(seed).sample(pool, round(fraction * len(pool)))
    for job in chosen:
        truth = work_of[job["subject"]]
        reviewers.verdict(job["job_id"], truth, "confirm")
        if job["top1"] and job["top1"] != truth:
            reviewers.verdict(job["job_id"], job["top1"], "reject")
    return len(chosen)


# ---------------------------------------------------------------- evaluation on the evaluation half

def evaluation_features(root: Path, n_distractors: int):
    from core.encoder import load_encoder
    from training.eval_data import read_folder_set
    from training.features import FeatureCache, extract_set_features
    full = read_folder_set(root)
    distractors = sorted(random.Random(0).sample(full.distractors, min(n_distractors, len(full.distractors))))
    full.distractors = distractors
    return extract_set_features(load_encoder("builtin:efficientnet-lite0"), full, FeatureCache())


def per_query_ap(features, maps=None) -> dict[str, list[float]]:
    """Service-protocol AP per query, grouped by subject; with maps, through the candidate's maps."""
    from core.mapping import map_vectors
    from training.metrics import service_query_metrics
    real = (lambda v: map_vectors(v, maps["real"])) if maps else (lambda v: v)
    synth = (lambda v: map_vectors(v, maps["synth"])) if maps else (lambda v: v)
    exemplars = {c: real(e) for c, e in features.exemplars.items()}
    distractors = real(features.distractors)
    out = {}
    for concept, by_type in features.queries.items():
        for queries in by_type.values():
            for query in synth(queries) if len(queries) else []:
                out.setdefault(concept, []).append(
                    service_query_metrics(query, concept, exemplars, distractors)["ap"])
    return out


def group_mean(ap: dict[str, list[float]], subjects: set[str]) -> np.ndarray:
    return np.asarray([a for s in sorted(subjects) for a in ap.get(s, [])], np.float64)


def bootstrap_diff(base: np.ndarray, cand: np.ndarray, n: int, seed: int) -> list[float]:
    """95% interval of mean(cand - base) over queries (paired resampling), in points."""
    rng = np.random.default_rng(seed)
    diffs = cand - base
    means = [diffs[rng.integers(0, len(diffs), len(diffs))].mean() for _ in range(n)]
    return [float(100 * np.percentile(means, 2.5)), float(100 * np.percentile(means, 97.5))]


# ---------------------------------------------------------------- one run and the whole study

def retrain_candidate(seed: int, steps: int, unsupervised_images: int, unsupervised_weight: float):
    from training.retrain_verdicts import fit_candidate, parse_args as retrain_args
    args = retrain_args(["--verdicts", "--seed", str(seed), "--steps", str(steps), "--no-publish",
                         "--unsupervised-images", str(unsupervised_images),
                         "--unsupervised-weight", str(unsupervised_weight)])
    _, report, maps, _ = fit_candidate(args, f"bench-{seed}-{time.time_ns()}")
    return report, maps


def score_run(features, zero, maps, reviewed, others, n_boot, seed) -> dict:
    cand = per_query_ap(features, maps)
    out = {}
    for name, subjects in (("with_verdicts", reviewed), ("without_verdicts", others)):
        b, c = group_mean(zero, subjects), group_mean(cand, subjects)
        out[name] = {"n_queries": int(b.size), "zero_shot_map": float(100 * b.mean()),
                     "candidate_map": float(100 * c.mean()), "diff": float(100 * (c - b).mean()),
                     "diff_ci95": bootstrap_diff(b, c, n_boot, seed)}
    return out


def markdown(results: dict) -> str:
    lines = ["# Verdict learning on the cross-context benchmark" + ("" if results.get("complete") else " (partial)"), "",
             results["summary_line"], "", f"Command: `{results['command']}`; {results['date']}; "
             f"{results['machine']['cpus']} cores, load average {results['machine']['load_average'][0]:.1f}; "
             f"wall {results['wall_s']} s.", "",
             "| verdicts | seed | gate | subjects with verdicts: zero-shot → candidate (Δ, 95% CI) | "
             "subjects without: zero-shot → candidate (Δ, 95% CI) |", "|---|---|---|---|---|"]
    for run in results["runs"]:
        cells = []
        for group in ("with_verdicts", "without_verdicts"):
            g = run["eval"][group]
            cells.append(f"{g['zero_shot_map']:.1f} → {g['candidate_map']:.1f} "
                         f"({g['diff']:+.1f}, [{g['diff_ci95'][0]:+.1f}, {g['diff_ci95'][1]:+.1f}])")
        gate = "passed" if run["gate"]["passed"] else "refused"
        lines.append(f"| {run['fraction']:.0%} ({run['n_verdict_queries']} queries) | {run['seed']} | {gate} | "
                     f"{cells[0]} | {cells[1]} |")
    lines += ["", "| verdicts | mean Δ with verdicts (over the seeds run) | mean Δ without |", "|---|---|---|"]
    for fraction, row in results["by_fraction"].items():
        lines.append(f"| {fraction} | {row['with_verdicts']:+.1f} | {row['without_verdicts']:+.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    root = args.set.resolve()
    stack, keys = start_stack(args.work.resolve())
    try:
        reviewers = Reviewers(stack.url, keys)
        subjects = sorted(d.name for d in root.iterdir() if (d / "exemplars").is_dir())
        work_of = {s: reviewers.register(s, sorted((root / s / "exemplars").glob("*.jpg"))) for s in subjects}
        distractors = sorted((root / "distractors").rglob("*.jpg"))
        for path in random.Random(1).sample(distractors, min(args.catalogue_distractors, len(distractors))):
            reviewers.register(f"distractor {path.stem}", [path])
        reviewers.wait_searchable()
        print(f"registered {len(work_of)} subjects + {args.catalogue_distractors} distractor works "
              f"({time.monotonic() - started:.0f}s)")
        jobs = play_traffic(reviewers, root, work_of)
        print(f"attributed {len(jobs)} traffic queries ({time.monotonic() - started:.0f}s)")
        reviewed = set(random.Random(args.subject_seed).sample(subjects, len(subjects) // 2))
        others = set(subjects) - reviewed
        features = evaluation_features(root, args.eval_distractors)
        zero = per_query_ap(features)
        runs = []
        for fraction in args.fractions:
            for seed in args.seeds:
                n = give_verdicts(reviewers, jobs, reviewed, fraction, seed, work_of)
                report, maps = retrain_candidate(seed, args.steps, args.unsupervised_images,
                                                 args.unsupervised_weight)
                runs.append({"fraction": fraction, "seed": seed, "n_verdict_queries": n,
                             "gate": {k: report[k] for k in ("passed", "reasons", "held_out", "unreviewed",
                                                             "unsupervised_images", "losses")},
                             "eval": score_run(features, zero, maps, reviewed, others, args.bootstrap, seed)})
                print(json.dumps(runs[-1]["eval"]))
                # written after every run, so a run cut short keeps what it measured
                write_results(args, runs, reviewed, others, len(jobs), time.monotonic() - started, argv)
    finally:
        stack.stop()
    return 0


def write_results(args, runs, reviewed, others, n_traffic, seconds, argv) -> None:
    by_fraction = {}
    for fraction in args.fractions:
        rows = [r for r in runs if r["fraction"] == fraction]
        if not rows:
            continue
        by_fraction[f"{fraction:.0%}"] = {g: float(np.mean([r["eval"][g]["diff"] for r in rows]))
                                          for g in ("with_verdicts", "without_verdicts")}
    results = {"command": "python -m bench.verdicts " + " ".join(sys.argv[1:] if argv is None else argv),
               "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                           "note": "shared machine (2 cores, other jobs running): timings are noisy",
                           "load_average": os.getloadavg()},
               "date": datetime.now(timezone.utc).isoformat(), "wall_s": round(seconds),
               "reviewed_subjects": sorted(reviewed), "unreviewed_subjects": sorted(others),
               "n_traffic_queries": n_traffic, "eval_distractors": args.eval_distractors,
               "catalogue_distractors": args.catalogue_distractors, "steps": args.steps,
               "unsupervised_images": args.unsupervised_images, "unsupervised_weight": args.unsupervised_weight,
               "runs": runs, "by_fraction": by_fraction,
               "complete": len(runs) == len(args.fractions) * len(args.seeds)}
    results["summary_line"] = (f"{len(reviewed)} subjects reviewed, {len(others)} not; {n_traffic} traffic queries "
                               f"attributed through the API; evaluation half scored with the service protocol "
                               f"against {args.eval_distractors} distractors. Δ in mAP points, candidate − zero-shot.")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    (args.out / "results.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    raise SystemExit(main())
