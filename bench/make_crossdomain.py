"""Build the cross-context attribution benchmark from DreamBooth subjects and offline distractors.

    PYTHONPATH=. .venv/bin/python -m bench.make_crossdomain --out bench/out/crossdomain

Layout written under OUT (see bench/README.md):
    <subject>/exemplars/*.jpg, <subject>/queries/<type>/*.jpg   evaluation half
    distractors/<source>/*.jpg                                   real photos and clip art, no subject
    traffic/<hash>.jpg + traffic_labels.json                     unlabeled half (labels for tuning only)
    manifest.json                                                seed, counts, sources, split rule
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import Counter
from functools import partial
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from bench.distractors import Source, custom_sources, default_sources, output_name, plan_candidates, \
    process_distractor
from bench.queries import Subject, attach_backgrounds, find_subjects, plan_queries, render_query
from bench.renderings import QUERY_TYPES

RESERVED = {"distractors", "traffic"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dreambooth", type=Path, default=Path("/work/shared/data/dreambooth"))
    p.add_argument("--out", type=Path, default=Path("bench/out/crossdomain"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--exemplars", type=int, default=1, help="photos per subject registered as the work")
    p.add_argument("--query-types", nargs="+", default=list(QUERY_TYPES), choices=QUERY_TYPES)
    p.add_argument("--query-side", type=int, default=512, help="queries are rendered at most this size")
    p.add_argument("--split-by", choices=["photo", "query"], default="photo",
                   help="photo: all renderings of a source photo share a half (no leakage); query: per type")
    p.add_argument("--distractor-dirs", type=Path, nargs="+", default=None,
                   help="use these folders instead of the Debian/scikit-image sources")
    p.add_argument("--max-distractors", type=int, default=6000)
    p.add_argument("--distractor-side", type=int, default=256)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--overwrite", action="store_true", help="replace an earlier build at OUT")
    return p.parse_args(argv)


def prepare_out(out: Path, overwrite: bool) -> None:
    # Refuse to mix two builds; only delete a folder that this script made (it has a manifest).
    if out.exists() and any(out.iterdir()):
        if not (overwrite and (out / "manifest.json").exists()):
            sys.exit(f"{out} is not empty; pass --overwrite to replace an earlier build")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


class _InProcess:
    """`Pool.map` / `Pool.imap` in this process, for one worker: no child at all."""

    def __enter__(self):
        return self

    def __exit__(self, *_):
        return None

    def map(self, fn, items, chunksize=1):
        return [fn(item) for item in items]

    def imap(self, fn, items, chunksize=1):
        return map(fn, items)


def worker_pool(workers: int):
    """Processes that render in parallel; none for one worker. Spawned, never forked: a fork copies every
    lock of a multi-threaded parent as it is, and one held by another thread at that instant (pytest with
    torch loaded) left the child waiting for ever: the test suite hung on it on a busy machine."""
    return _InProcess() if workers <= 1 else get_context("spawn").Pool(workers)


def write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def build_distractors(args, sources: list[Source], pool) -> tuple[dict, dict[str, bytes]]:
    """Write up to --max-distractors distractors; return per-source stats and composite backgrounds."""
    candidates = plan_candidates(sources, args.seed)
    stats = {s.name: Counter(candidates=0) for s in sources}
    for source, _ in candidates:
        stats[source.name]["candidates"] += 1
    work = [(path, args.distractor_side, source.photo) for source, path in candidates]
    backgrounds, seen, kept = {}, set(), 0
    bar = tqdm(total=min(args.max_distractors, len(work)), desc="distractors", unit="img")
    # Batches in candidate order: the kept set depends on that order only, never on worker
    # timing, and no work is queued beyond the batch that reaches the cap.
    for start in range(0, len(work), 512):
        if kept >= args.max_distractors:
            break
        results = pool.map(_process, work[start:start + 512], chunksize=8)
        for (source, path), result in zip(candidates[start:start + 512], results):
            if kept >= args.max_distractors:
                break
            status = result.status
            if status == "ok" and result.fingerprint in seen:
                status = "duplicate"
            stats[source.name][status] += 1
            if status != "ok":
                continue
            seen.add(result.fingerprint)
            name = output_name(source, path)
            write_file(args.out / "distractors" / name, result.jpeg)
            if result.background:
                backgrounds[name] = result.background
            kept += 1
            bar.update()
    bar.close()
    return {s.name: {"root": str(s.root), "licence": s.licence, "photo": s.photo, **stats[s.name]}
            for s in sources}, backgrounds


def _process(item):
    return process_distractor(*item)


def build_queries(args, subjects: list[Subject], backgrounds: dict[str, bytes], pool) -> tuple[dict, list]:
    """Copy exemplars, render and write all queries; return the traffic labels and the query specs."""
    for subject in subjects:
        for photo in subject.exemplars:
            write_file(args.out / subject.name / "exemplars" / f"{photo.stem}.jpg", photo.read_bytes())
    specs = attach_backgrounds(plan_queries(subjects, args.query_types, args.seed, args.split_by), backgrounds)
    render = partial(render_query, query_side=args.query_side)
    labels = {}
    for spec, jpeg in tqdm(zip(specs, pool.imap(render, specs, chunksize=4)), total=len(specs),
                           desc="queries", unit="img"):
        write_file(args.out / spec.out_rel, jpeg)
        if spec.split == "traffic":
            labels[Path(spec.out_rel).name] = {"subject": spec.subject, "type": spec.query_type,
                                               "source": spec.source.name}
    return dict(sorted(labels.items())), specs


def count_queries(specs) -> dict:
    counts = {split: Counter() for split in ("evaluation", "traffic")}
    for spec in specs:
        counts[spec.split][spec.query_type] += 1
    return {split: dict(sorted(c.items())) | {"total": sum(c.values())} for split, c in counts.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    subjects = find_subjects(args.dreambooth, args.exemplars)
    if not subjects:
        sys.exit(f"no subject folders with more than {args.exemplars} photos under {args.dreambooth}")
    if clash := RESERVED & {s.name for s in subjects}:
        sys.exit(f"subject names clash with benchmark folders: {sorted(clash)}")
    sources = custom_sources(args.distractor_dirs) if args.distractor_dirs else default_sources()
    prepare_out(args.out, args.overwrite)
    with worker_pool(args.workers) as pool:
        distractor_stats, backgrounds = build_distractors(args, sources, pool)
        labels, specs = build_queries(args, subjects, backgrounds, pool)
    (args.out / "traffic_labels.json").write_text(json.dumps(labels, indent=1) + "\n")
    manifest = {
        "seed": args.seed,
        "dreambooth": str(args.dreambooth),
        "subjects": len(subjects),
        "exemplars_per_subject": args.exemplars,
        "exemplar_rule": f"first {args.exemplars} photo(s) of each subject by file name",
        "query_types": args.query_types,
        "query_side": args.query_side,
        "split_rule": (f"per subject, a seeded half of the non-exemplar {'photos' if args.split_by == 'photo' else 'photos, per query type,'}"
                       " goes to evaluation, the rest to traffic (odd counts: a seeded coin)"),
        "split_by": args.split_by,
        "queries": count_queries(specs),
        "distractors": {"total": sum(s.get("ok", 0) for s in distractor_stats.values()),
                        "max": args.max_distractors, "side": args.distractor_side,
                        "composite_backgrounds": len(backgrounds), "sources": distractor_stats},
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    q = manifest["queries"]
    print(f"built {args.out}: {len(subjects)} subjects, {q['evaluation']['total']} evaluation + "
          f"{q['traffic']['total']} traffic queries, {manifest['distractors']['total']} distractors "
          f"in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
