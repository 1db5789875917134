"""How long a worker's jobs wait while its snapshot thread writes a new base (issue 8).

    PYTHONPATH=. .venv/bin/python -m bench.snapshot_stall --n 1000000 --rounds 3

The first snapshot after a build or rebuild writes the whole base: at 1M the codes (175 MB) and the
float16 re-rank rows (2.5 GB), at 10M 26 GB. A job thread runs the attribution worker's index work in a
loop (`LiveStore.sync`, then a k=40 search), with a registration committed to the change log every fifth
job so the syncs apply something; meanwhile the snapshot thread writes a fresh base, in interleaved
rounds, two ways:
- `held`: the lock every job's sync takes is held for the whole write (what `LiveStore.snapshot` did
  before 2026-11-27, reproduced here as it was: `write_snapshot` inside `with live._lock`);
- `copied`: the worker's own `LiveStore.snapshot` (a copy of the changes under the lock, the write
  outside it).
Each round builds a fresh `LiveStore` around the same in-memory store and writes into an empty storage
folder, so every round writes the whole base. Reported: the write's wall time, and the jobs that ran
during it (count, p50, p99, longest), beside the same jobs' latency with no snapshot running.

    PYTHONPATH=. .venv/bin/python -m bench.snapshot_stall --rebuild --n 1000000 --rounds 2

`--rebuild`: the same jobs while the snapshot thread rebuilds the base from the database (N vectors in
a SQLite file), swaps it in and writes it, with the rebuild at niceness 0 (as before 2026-11-27) and at
the default `ATTRIB_INDEX_REBUILD_NICE` (common/low_priority.py), interleaved. Every round wraps the
same first store, whose delta keeps the registrations of all rounds before (a few thousand a round),
so later rounds search a larger delta; the interleaving spreads that over both ways. Writes
rebuild-stall.{json,md} instead (rebuild-stall-N.* at other sizes).

    PYTHONPATH=. .venv/bin/python -m bench.snapshot_stall --fold --n 1000000 --rounds 1

`--fold`: the base starts with `--delta` changes beside it (20,000, `ATTRIB_INDEX_COMPACT_AFTER`: the
base built over the other vectors, the rest replayed from the change log), and the snapshot thread
renews it two ways, interleaved, both at the default niceness: `rebuild` from the database
(`ATTRIB_INDEX_RETRAIN_GROWTH=0`, the code before the fold) and `fold` (the changes folded into a copy
of the base, indexing/backends/faiss_fold.py). Writes fold-stall.{json,md} (fold-stall-N.*).

    PYTHONPATH=. .venv/bin/python -m bench.snapshot_stall --fold --rows --n 1000000 --rounds 2

`--fold --rows`: both ways fold; `rows copied` has the snapshot copy the new base's re-rank rows (the
code before 2026-11-27's `FileRows.link_to`), `rows linked` gives the file the fold wrote a name in the
snapshot. Writes fold-rows-stall.{json,md}.

The vectors are Gaussian clusters (not the real features bench/scale.py pads): the stall depends on
the bytes written and the lock, not on the neighbours found. The database is a SQLite file. Writes
bench/results/scale/snapshot-stall.{json,md} (at 1M; snapshot-stall-N.* at other sizes)."""
import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from bench.attribution import machine
from bench.scale_measure import _commit_one_registration, fill_database, percentiles
from common.settings import Settings, get_settings
from indexing.backends.exact_rows import FileRows
from indexing.backends.faiss import build_store
from indexing.snapshots import write_snapshot
from indexing.store import index_params

MODES = ("held", "copied")
REBUILD_MODES = {"nice 0": 0, f"nice {Settings().index_rebuild_nice}": Settings().index_rebuild_nice}
FOLD_MODES = {"rebuild": 0.0, "fold": Settings().index_retrain_growth}  # ATTRIB_INDEX_RETRAIN_GROWTH (0: rebuild)
ROWS_MODES = {"rows copied": False, "rows linked": True}  # --fold --rows: may the snapshot link the rows?


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300_000, help="vectors in the base (1,000,000 for the README)")
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each mode, interleaved")
    parser.add_argument("--work", type=Path, default=Path("bench/out/snapshot-stall"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/scale"))
    parser.add_argument("--rebuild", action="store_true", help="measure a rebuild from the database instead")
    parser.add_argument("--fold", action="store_true", help="a rebuild from the database beside a fold")
    parser.add_argument("--rows", action="store_true", help="with --fold: folds whose snapshot copies or links the rows")
    parser.add_argument("--delta", type=int, default=Settings().index_compact_after,
                        help="with --fold: changes beside the base when the rounds start")
    return parser.parse_args(argv)


def clustered(n: int, dim: int, rng: np.random.Generator, clusters: int = 1000) -> np.ndarray:
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    vectors = np.empty((n, dim), np.float32)
    for start in range(0, n, 50_000):
        stop = min(n, start + 50_000)
        vectors[start:stop] = centres[rng.integers(0, clusters, stop - start)]
        vectors[start:stop] += 0.5 * rng.standard_normal((stop - start, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


class Jobs(threading.Thread):
    """The attribution worker's index work per job, in a loop: sync the log, then search."""

    def __init__(self, engine, queries: np.ndarray, rng: np.random.Generator):
        super().__init__(daemon=True)
        self.engine, self.queries, self.rng = engine, queries, rng
        self.live = None
        self.samples: list[tuple[float, float]] = []  # (start, milliseconds)
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            live = self.live
            if i % 5 == 0:  # an import going on: the next sync has a row to apply
                _commit_one_registration(self.engine, 0, self.rng.standard_normal(self.queries.shape[1]).astype(np.float32))
            with Session(self.engine) as session:
                started = time.perf_counter()
                live.sync(session)
                live.store.search(self.queries[i % len(self.queries)][None], 40)
                self.samples.append((started, (time.perf_counter() - started) * 1000))
            i += 1
            time.sleep(0.01)  # jobs arrive, not a busy loop: the write gets the disk it would get

    def between(self, start: float, stop: float) -> list[float]:
        """Jobs that were running at some point in [start, stop]."""
        return [ms for began, ms in list(self.samples) if began <= stop and began + ms / 1000 >= start]


def snapshot(mode: str, live, settings: Settings) -> None:
    if mode == "held":  # the code before the fix, as it was
        with live._lock:
            write_snapshot(live.storage, live.store, scratch=settings.cache_dir)
            live.snapshot_seq = live.store.applied_seq
        live.refresh(force=True)
    else:
        live.snapshot(None, rebuild=False)


@contextlib.contextmanager
def rows_linked(allowed: bool):
    """Saves within may link re-rank rows (the runtime), or must copy them (the code before)."""
    link_to = FileRows.link_to
    if not allowed:
        FileRows.link_to = lambda self, path: False
    try:
        yield
    finally:
        FileRows.link_to = link_to


def stats(samples: list[float]) -> dict:
    if not samples:
        return {"jobs": 0}
    return {"jobs": len(samples), **percentiles(samples), "max_ms": round(max(samples), 2),
            # how many jobs a short call slowed, beside a long one (a p99 over 900 jobs is 9 of them)
            "over_50_ms": sum(ms > 50 for ms in samples), "over_100_ms": sum(ms > 100 for ms in samples)}


def main(argv=None) -> int:
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{(args.work / 'log.db').resolve()}"
    os.environ["ATTRIB_DATABASE_URL"] = url  # LiveStore.snapshot opens its own session on it
    get_settings.cache_clear()
    from common.db.session import make_engine
    from indexing.live import LiveStore
    from indexing.store import build_from_database

    rng = np.random.default_rng(0)
    print(f"{args.n:,} x {args.dim} vectors ...", flush=True)
    vectors = clustered(args.n, args.dim, rng)
    queries = vectors[rng.choice(args.n, 64, replace=False)] + 0.05 * rng.standard_normal((64, args.dim)).astype(np.float32)
    renew = args.rebuild or args.fold
    fill_database(url, vectors if renew else np.zeros((0, args.dim), np.float32), args.delta if args.fold else 0)
    engine = make_engine(url)
    started = time.perf_counter()
    settings = Settings(database_url=url, data_dir=args.work / "data")
    if args.fold:  # ids 1..delta come from the change log (fill_database's rows), the rest from the base
        store = build_store("bench", args.dim, np.arange(args.delta + 1, args.n + 1), vectors[args.delta:],
                            index_params(settings), scratch=settings.cache_dir)
    elif args.rebuild:
        with Session(engine) as session:
            store = build_from_database(session, "bench", args.dim, index_params(settings), scratch=settings.cache_dir)
    else:
        store = build_store("bench", args.dim, np.arange(10**9, 10**9 + args.n), vectors, index_params(settings),
                            scratch=settings.cache_dir)
    del vectors
    built_s = time.perf_counter() - started
    print(f"built {store.factory} in {built_s:.0f} s", flush=True)

    if args.rows and not args.fold:
        raise SystemExit("--rows compares two folds: add --fold")
    modes = (list(ROWS_MODES) if args.rows else list(FOLD_MODES) if args.fold else list(REBUILD_MODES) if args.rebuild
             else list(MODES))
    jobs = Jobs(engine, queries, rng)
    jobs.live = LiveStore(store, "database", settings)
    with Session(engine) as session:  # --fold: the delta, before any job is timed
        jobs.live.sync(session)
    jobs.start()
    rounds = []
    for r in range(args.rounds):
        for mode in (modes if r % 2 == 0 else modes[::-1]):
            shutil.rmtree(settings.data_dir, ignore_errors=True)
            mode_settings = (settings if args.rows else
                             settings.model_copy(update={"index_retrain_growth": FOLD_MODES[mode]}) if args.fold else
                             settings.model_copy(update={"index_rebuild_nice": REBUILD_MODES[mode]}) if args.rebuild
                             else settings)
            live = LiveStore(store, "database", mode_settings)
            if renew:  # the registrations the jobs commit are enough to ask for a rebuild
                live.params = dataclasses.replace(live.params, compact_after=1)
            jobs.live = live
            time.sleep(2.0)
            idle_from = time.perf_counter()
            time.sleep(3.0)
            began = time.perf_counter()
            if renew:
                with rows_linked(ROWS_MODES.get(mode, True)):
                    live.snapshot(None, rebuild=True)
            else:
                snapshot(mode, live, settings)
            ended = time.perf_counter()
            time.sleep(0.5)
            row = {"mode": mode, "round": r, "write_s": round(ended - began, 2), "index_id": live.store.index_id,
                   "trained_count": live.store.trained_on(),
                   "idle": stats(jobs.between(idle_from, began)), "during": stats(jobs.between(began, ended))}
            rounds.append(row)
            print(json.dumps(row), flush=True)
    jobs.stop.set()
    jobs.join()
    engine.dispose()
    name = (("fold-rows-stall" if args.rows else "fold-stall" if args.fold else "rebuild-stall" if args.rebuild else "snapshot-stall")
            + ("" if args.n == 1_000_000 else f"-{args.n}"))
    result = {"machine": machine(), "n": args.n, "dim": args.dim, "index_type": store.factory, "rebuild": args.rebuild,
              "fold": args.fold, "rows": args.rows, "delta": args.delta if args.fold else 0,
              "base_bytes": store.base_bytes_size(), "build_s": round(built_s, 1), "rounds": rounds,
              "summary": summary(rounds, modes),
              "command": (f"python -m bench.snapshot_stall{' --rebuild' if args.rebuild else ''}"
                          f"{' --fold' if args.fold else ''}{' --rows' if args.rows else ''} --n {args.n} --rounds {args.rounds}"
                          f"{f' --delta {args.delta}' if args.fold and args.delta != Settings().index_compact_after else ''}")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2))
    (args.out / f"{name}.md").write_text(markdown(result))
    print(markdown(result))
    shutil.rmtree(settings.data_dir, ignore_errors=True)
    return 0


def summary(rounds: list[dict], modes) -> dict:
    """Per mode: the median over rounds of each figure."""
    out = {}
    for mode in modes:
        mine = [r for r in rounds if r["mode"] == mode]
        out[mode] = {"write_s": _median(mine, lambda r: r["write_s"]),
                     "jobs_during": _median(mine, lambda r: r["during"]["jobs"]),
                     "max_ms": _median(mine, lambda r: r["during"].get("max_ms", 0.0)),
                     "p99_ms": _median(mine, lambda r: r["during"].get("p99_ms", 0.0)),
                     "idle_p99_ms": _median(mine, lambda r: r["idle"].get("p99_ms", 0.0))}
    return out


def _median(rows: list[dict], figure) -> float:
    return round(float(np.median([figure(r) for r in rows])), 2)


def markdown(result: dict) -> str:
    m = result["machine"]
    what = ("folds its base, the snapshot copying or linking the rows" if result.get("rows") else
            "renews its base: a fold beside a rebuild" if result.get("fold") else
            "rebuilds its base from the database" if result.get("rebuild") else "writes a new base")
    lines = [(f"# A job's wait while the snapshot thread {what} ({result['n']:,} x {result['dim']}, "
              f"`{result['index_type']}`)"), "",
             (f"`{result['command']}`. Machine: {m['cpu']}, {m['cores']} cores; {m['date'][:16]} UTC. "
              f"Base: {result['base_bytes'] / 1e6:,.0f} MB of codes and ids, plus the float16 re-rank rows. "
              "Modes interleaved, a fresh storage folder per round."), "",
             "| mode | round | call s | jobs during | p50 / p99 / longest ms during | jobs over 50 / 100 ms | idle p50 / p99 ms |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rounds"]:
        d, i = r["during"], r["idle"]
        lines.append(f"| {r['mode']} | {r['round']} | {r['write_s']} | {d['jobs']} | "
                     f"{d.get('p50_ms', '-')} / {d.get('p99_ms', '-')} / {d.get('max_ms', '-')} | "
                     f"{d.get('over_50_ms', '-')} / {d.get('over_100_ms', '-')} | "
                     f"{i.get('p50_ms', '-')} / {i.get('p99_ms', '-')} |")
    lines += ["", "Medians over rounds:", "", "| mode | call s | jobs during | p99 / longest ms during | idle p99 ms |",
              "|---|---|---|---|---|"]
    for mode, s in result["summary"].items():
        lines.append(f"| {mode} | {s['write_s']} | {s['jobs_during']} | {s['p99_ms']} / {s['max_ms']} | {s['idle_p99_ms']} |")
    if result.get("rows"):
        lines += ["", (f"The call: `LiveStore.snapshot` with {result['delta']:,} changes (and the jobs' registrations) "
                       "beside the base, folded both ways; then the swap and the new base's snapshot. `rows copied`: "
                       "the snapshot writes the re-rank rows the fold wrote a second time (the code before "
                       "`FileRows.link_to`); `rows linked`: it names the fold's file.")]
    elif result.get("fold"):
        lines += ["", (f"The call: `LiveStore.snapshot` with {result['delta']:,} changes (and the jobs' registrations) "
                       "beside the base: `rebuild` from the database (`ATTRIB_INDEX_RETRAIN_GROWTH=0`, the code "
                       "before the fold), `fold` into a copy of the base; then the swap and the new base's snapshot. "
                       "Both at the default rebuild niceness.")]
    elif result.get("rebuild"):
        lines += ["", ("The call: `LiveStore.snapshot` with a rebuild due (build from the database, swap, base "
                       "written). `nice N`: `ATTRIB_INDEX_REBUILD_NICE=N` (0: the code before the change).")]
    else:
        lines += ["", ("The call: the snapshot. `held`: the lock every job's sync takes held for the whole write "
                       "(the code before the fix); `copied`: `LiveStore.snapshot` now (the changes copied under "
                       "the lock, the base written outside it).")]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
