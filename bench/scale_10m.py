"""10M vectors measured on one machine instead of extrapolated (issue 8: "1M ... and 10M with compressed
codes, or an honest extrapolation").

    PYTHONPATH=. .venv/bin/python -m bench.scale_10m                 # 10M x 1280: ~25 minutes on 2 cores
    PYTHONPATH=. .venv/bin/python -m bench.scale_10m --n 300000      # the same steps at a size that takes minutes

At 10M x 1280 the float32 vectors are 51 GB, more than this machine's disk can spare beside the index, so
they are never stored: the padding is drawn chunk by chunk from the same per-cluster Gaussian mixture as
bench/scale.py (fitted to the real distractors' Lite0 features), each chunk from its own seed, so any
chunk can be drawn again identically. One pass computes the exact top 100 of the 378 real cross-context
queries (the ground truth); the index is built by the runtime's own memory-bounded builder
(`build_from_chunks`, the path `build_from_database` takes), with the parameters the runtime picks
(`IVF4096,PQ320x4fs`, re-rank rows in a 24 GiB float16 file). Then: search latency and recall@10, twice
(the page cache as the build left it, then again), cross-context top-1 / AP@100 exact vs approximate,
one registration's store work, index memory and the process's peak memory. With `--share`, also a
snapshot written the runtime's way and two workers started from it at once, with the encoder loaded
(warm start, PSS); it needs as much disk again as the re-rank rows. With `--fold`, also the snapshot
writer's renewal of that base: `ATTRIB_INDEX_COMPACT_AFTER` (20,000) registered vectors replaced (by
themselves, so the ground truth holds) and folded into a copy of the base (indexing/backends/faiss_fold.py),
timed, with the process's peak memory, then searched again; it also needs the re-rank rows' disk again.
Not measured here: a cold start from a database (the 1M figure is in bench/results/scale).

Writes bench/results/scale/scale-10m.{json,md}, the machine named."""
import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from bench.attribution import machine
from bench.scale import ensure_crossdomain
from bench.scale_data import Mixture, real_features, top_k_of_chunks
from bench.scale_measure import (
    _attribution_metrics,
    probes_split_against_one_thread,
    search_quality,
    upsert_cost,
    warm_start_and_sharing,
)
from common.settings import Settings
from indexing.backends.faiss import build_from_chunks
from indexing.backends.faiss_fold import can_fold, fold
from indexing.store import index_params

CHUNK = 100_000


class Padded:
    """The real vectors, then mixture samples up to n rows; chunk c (rows c*CHUNK ...) is drawn from seed
    (seed, c), so every pass over the base sees the same vectors without storing them."""

    def __init__(self, real: np.ndarray, fit_on: np.ndarray, n: int, seed: int = 0):
        self.real, self.n, self.seed, self.dim = real, n, seed, real.shape[1]
        self.mixture = Mixture.fit(fit_on)

    def chunk(self, c: int) -> np.ndarray:
        start, stop = c * CHUNK, min(self.n, (c + 1) * CHUNK)
        out = self.mixture.sample(stop - start, np.random.default_rng([self.seed, c]))
        real_rows = max(0, min(stop, len(self.real)) - start)
        out[:real_rows] = self.real[start:start + real_rows]
        return out

    def chunks(self):
        for c in range(-(-self.n // CHUNK)):
            yield c, self.chunk(c)

    def rows(self, positions: np.ndarray) -> np.ndarray:
        """The vectors at these sorted positions (a training sample), drawing each chunk they touch."""
        out = np.empty((len(positions), self.dim), np.float32)
        bounds = np.searchsorted(positions, np.arange(0, self.n + CHUNK, CHUNK))
        for c in range(len(bounds) - 1):
            if bounds[c + 1] > bounds[c]:
                out[bounds[c]:bounds[c + 1]] = self.chunk(c)[positions[bounds[c]:bounds[c + 1]] - c * CHUNK]
        return out


# (nprobe, re-rank depth, retry nprobe, retry re-rank depth): the defaults before `IndexParams.probes`
# (128 lists at every size) first, then wider ones, to tell lists not visited from codes that misrank.
SWEEP = [(128, 1000, 512, 3000), (128, 1000, 0, 0), (128, 3000, 512, 3000), (256, 1000, 512, 3000),
         (512, 1000, 1024, 3000), (512, 2000, 2048, 4000), (1024, 2000, 2048, 4000)]


def parse_sweep(text: str) -> list[tuple]:
    """`512:500:1024:1500,256:500:1024:1500:0.6` -> [(nprobe, re-rank, retry nprobe, retry re-rank[,
    retry below]), ...]; without the fifth field a retry uses the runtime's `retry_below`."""
    try:
        settings = [tuple(int(x) for x in item.split(":")[:4]) + tuple(float(x) for x in item.split(":")[4:])
                    for item in text.split(",") if item.strip()]
    except ValueError:
        settings = []
    if not settings or any(len(s) not in (4, 5) or min(s) < 0 or s[0] < 1 for s in settings):
        raise argparse.ArgumentTypeError(
            "expected nprobe:rerank:retry_nprobe:retry_rerank[:retry_below][,...] (retry 0:0 = off)")
    return settings


def split_time(store, queries: np.ndarray, k: int = 40) -> dict:
    """Where a query's time goes with the store's first-pass settings: the share of queries retried, and
    p50 ms of the codes' search alone (coarse quantiser + list scan) against the whole first pass (codes +
    exact re-rank of the shortlist); the rest of a query's p50 is the retry."""
    codes, whole, retried = [], [], 0
    fetch = store._fetch_size(k, store._rerank_depth())
    for query in queries:
        query = query[None]
        started = time.perf_counter()
        with store.scan_threads(1, store.nprobe):
            store.base.search(query, fetch, params=store._search_params(store.nprobe))
        codes.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        _, scores = store._search_lists(query, k, store.nprobe, store._rerank_depth())
        whole.append((time.perf_counter() - started) * 1000)
        retried += bool(store.retry_below and scores[0, 0] < store.retry_below)
    return {"codes_p50_ms": round(float(np.median(codes)), 2), "first_pass_p50_ms": round(float(np.median(whole)), 2),
            "retried_pct": round(100 * retried / len(queries), 1)}


def sweep(store, real, truth: np.ndarray, params, settings=SWEEP) -> list[dict]:
    """Search settings beside the runtime's, on the same built index (rows cached by the passes before)."""
    rows, built = [], (store.nprobe, store.rerank, store.retry_nprobe, store.retry_rerank, store.retry_below)
    for nprobe, depth, retry_nprobe, retry_depth, *below in settings:
        store.nprobe, store.rerank, store._params = nprobe, depth, None
        store.retry_nprobe, store.retry_rerank = retry_nprobe, retry_depth
        store.retry_below = (below[0] if below else params.retry_below) if retry_nprobe else 0.0
        row = {"nprobe": nprobe, "rerank": depth, "retry_nprobe": retry_nprobe, "retry_rerank": retry_depth,
               "retry_below": store.retry_below,
               **search_quality(store, real.queries, truth[:, :10]), **split_time(store, real.queries)}
        found = store.search(real.queries, 100)[0]
        row["quality"] = _attribution_metrics(found, real.query_subject, real.exemplar_rows)
        print(json.dumps(row), flush=True)
        rows.append(row)
    store.nprobe, store.rerank, store.retry_nprobe, store.retry_rerank, store.retry_below = built
    store._params = None
    return rows


def command(args) -> str:
    """The command as run, with the ATTRIB_ANN_* settings it ran under (they pick the index)."""
    env = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("ATTRIB_ANN_"))
    options = (f" --n {args.n}" if args.n != 10_000_000 else "") + (
        " --sweep " + ",".join(":".join(map(str, s)) for s in args.sweep) if args.sweep != SWEEP else "") + (
        " --share" if args.share else "") + (" --fold" if args.fold else "")
    return (env + " " if env else "") + "python -m bench.scale_10m" + options


def reset_peak_rss() -> float:
    """Start this process's peak-RSS count afresh (Linux: clear_refs 5); returns the RSS now, GiB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_gib("VmRSS")


def peak_rss() -> float:
    """This process's peak RSS (VmHWM) since it started or since `reset_peak_rss`, GiB."""
    return _status_gib("VmHWM")


def _status_gib(field: str) -> float:
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field + ":"))
    return round(int(line.split()[1]) / 2**20, 2)


def meminfo() -> dict:
    fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return {name: round(int(fields[name].split()[0]) / 2**20, 1) for name in ("MemTotal", "MemAvailable", "Cached")}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_10m", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--set", type=Path, default=Path("bench/out/crossdomain"))
    parser.add_argument("--work", type=Path, default=Path("bench/out/scale"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/scale"))
    parser.add_argument("--sweep", type=parse_sweep, default=SWEEP,
                        help="search settings tried on the built index, nprobe:rerank:retry_nprobe:retry_rerank,...")
    parser.add_argument("--share", action="store_true",
                        help="write a snapshot and start two workers from it (24 GiB more disk at 10M; removed after)")
    parser.add_argument("--fold", action="store_true",
                        help="fold 20,000 changes into a copy of the base (24 GiB more disk at 10M while it runs)")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    ensure_crossdomain(args.set)
    real = real_features(args.set, args.work / "features-lite0-0.npz")
    padded = Padded(real.base, real.base[len(real.subjects):], args.n)
    params = index_params(Settings())
    name = "scale-10m" if args.n == 10_000_000 else f"scale-{args.n}"
    result = {"command": command(args),
              "machine": machine(), "n": args.n, "dim": padded.dim, "queries": len(real.queries),
              "params": params.__dict__, "load_average_before": os.getloadavg(), "steps": {}}

    def save():
        (args.out / f"{name}.json").write_text(json.dumps(result, indent=2))  # partial results survive

    def step(label: str, started: float) -> None:
        result["steps"][label] = round(time.perf_counter() - started, 1)
        print(f"{label}: {result['steps'][label]} s", flush=True)
        save()

    started = time.perf_counter()
    truth = top_k_of_chunks(((c * CHUNK, chunk) for c, chunk in padded.chunks()), real.queries, 100)
    step("exact top 100 of every query (one pass, vectors drawn on the fly)", started)

    timings = {}

    def sample(size: int) -> np.ndarray:
        t = time.perf_counter()
        positions = np.sort(np.random.default_rng(0).choice(args.n, size, replace=False))
        out = padded.rows(positions)
        timings["sample_s"], timings["train_from"] = round(time.perf_counter() - t, 1), time.perf_counter()
        return out

    def chunks():
        timings["train_s"] = round(time.perf_counter() - timings["train_from"], 1)
        print(f"trained in {timings['train_s']} s; adding", flush=True)
        for c, chunk in padded.chunks():
            if c % 10 == 0:
                print(f"  chunk {c} of {-(-args.n // CHUNK)}, {time.perf_counter() - started:.0f} s", flush=True)
            yield np.arange(c * CHUNK, c * CHUNK + len(chunk)), chunk

    started = time.perf_counter()
    store = build_from_chunks("bench", padded.dim, args.n, chunks(), sample, params, scratch=args.work)
    step("build: sample + train + add (the runtime's builder)", started)
    result["build"] = {**timings, "index_type": store.factory, "nprobe": store.nprobe, "retry_nprobe": store.retry_nprobe,
                       "total_s": result["steps"]["build: sample + train + add (the runtime's builder)"]}
    result["build"].pop("train_from", None)
    result["index_memory_mb"] = round(store.base_bytes_size() / 2**20, 1)
    result["rerank_rows_gib"] = round(len(store.rows) * store.rows.row_bytes / 2**30, 2)
    result["peak_rss_gib_after_build"] = peak_rss()
    result["memory_before_queries"] = meminfo()
    save()

    for attempt in ("first pass, the page cache as the build left it", "again (these queries' rows now cached)"):
        started = time.perf_counter()
        result.setdefault("search", {})[attempt] = search_quality(store, real.queries, truth[:, :10])
        step(f"search, {attempt}", started)
    started = time.perf_counter()
    result["probes_split"] = probes_split_against_one_thread(store, real.queries, truth[:, :10], split_from=0)
    step("search, probes split against one thread (interleaved)", started)
    approx = store.search(real.queries, 100)[0]
    target_rows = real.exemplar_rows
    result["quality"] = {"exact": _attribution_metrics(truth, real.query_subject, target_rows),
                         "approximate": _attribution_metrics(approx, real.query_subject, target_rows)}
    result["registration_store_upsert"] = upsert_cost(store, real.base[:30], 10**12)
    save()
    result["sweep"] = sweep(store, real, truth, params, args.sweep)
    save()
    result["memory_after_queries"] = meminfo()
    result["peak_rss_gib"] = peak_rss()
    if args.fold:
        started = time.perf_counter()
        result["fold"] = fold_step(store, padded, params, real, truth, args.work)
        step("fold: changes upserted, copied, folded, searched", started)
    if args.share:
        started, rss_before = time.perf_counter(), reset_peak_rss()
        try:
            result["share"] = warm_start_and_sharing(store, real.queries, args.work / "share", with_model=True)
        finally:
            shutil.rmtree(args.work / "share", ignore_errors=True)
        result["share"]["writer_rss_gib"] = {"before": rss_before, "peak_while_writing": peak_rss()}
        step("snapshot written, then worker starts from it", started)
    result["load_average_after"] = os.getloadavg()
    save()
    (args.out / f"{name}.md").write_text(report(result))
    print(report(result))


def fold_step(store, padded: Padded, params, real, truth: np.ndarray, scratch: Path) -> dict:
    """The snapshot writer's renewal of a base with `compact_after` changes beside it: the vectors of
    that many random ids registered again (each a replacement: masked in the base, added to the delta),
    the changes copied, folded into a copy of the base, and the folded store searched."""
    positions = np.sort(np.random.default_rng(1).choice(padded.n, params.compact_after, replace=False))
    store.upsert(positions, padded.rows(positions))
    if not can_fold(store, params):
        raise SystemExit(f"the runtime would rebuild {store.factory} here, not fold")
    rss_before = reset_peak_rss()
    started = time.perf_counter()
    state = store.state()
    copied_s = time.perf_counter() - started
    folded = fold(store, state, params, scratch=scratch)
    out = {"changes": int(params.compact_after), "state_copy_s": round(copied_s, 2),
           "fold_s": round(time.perf_counter() - started - copied_s, 1),
           "rss_gib": {"before": rss_before, "peak_while_folding": peak_rss()},
           "list_imbalance": round(folded.list_imbalance(), 3)}
    print(json.dumps(out), flush=True)
    out["search"] = search_quality(folded, real.queries, truth[:, :10])
    out["quality"] = _attribution_metrics(folded.search(real.queries, 100)[0], real.query_subject, real.exemplar_rows)
    return out


def fold_rows(r: dict) -> list[str]:
    """`--fold`: the renewal of the base by a fold, and the folded base's search."""
    if "fold" not in r:
        return []
    f = r["fold"]
    return [(f"| fold of {f['changes']:,} replaced vectors into a copy of the base: changes copied / folded (s) | "
             f"{f['state_copy_s']} / {f['fold_s']} | a build: {r['build']['total_s']} s |"),
            (f"| the process's RSS before / at its peak while folding (GiB) | {f['rss_gib']['before']} / "
             f"{f['rss_gib']['peak_while_folding']} | |"),
            (f"| the folded base: p50 / p99 ms, recall@10, top-1 / AP@100 % | {f['search']['p50_ms']:.1f} / "
             f"{f['search']['p99_ms']:.1f}, {f['search']['recall_at_10']:.3f}, {f['quality']['top1_pct']} / "
             f"{f['quality']['ap_at_100_pct']} | |")]


def probes_split_rows(r: dict) -> list[str]:
    """One query's probes split over the OpenMP team (the runtime past PARALLEL_SCAN_FROM codes) against
    one thread, interleaved (runs before 2026-11-28 lack it)."""
    if "probes_split" not in r:
        return []
    split = r["probes_split"]
    now, before = split["runtime"], split["one_thread"]
    how = "probes split over FAISS's threads" if split["codes_scanned"] >= split["split_from"] else "one thread"
    return [(f"| search p50 / p99 ms, the runtime ({how}: ~{split['codes_scanned']:,} codes a query) against "
             f"every base search on one thread, {split['rounds']} rounds interleaved | {now['p50_ms']:.1f} / "
             f"{now['p99_ms']:.1f} against {before['p50_ms']:.1f} / {before['p99_ms']:.1f} | 20 / 100 |")]


def share_rows(r: dict) -> list[str]:
    """`--share`: the snapshot, the writer's memory, and two workers started from it at once."""
    if "share" not in r:
        return []
    share, alone = r["share"], r["share"]["alone"]
    pair = share.get("two_workers_with_model") or share["two_workers"]
    rss = share["writer_rss_gib"]
    return [f"| snapshot written (s) / its size (MB) | {share['snapshot_write_s']} / {share['snapshot_mb']:.0f} | |",
            f"| the writer's RSS before / at its peak while writing (GiB) | {rss['before']} / {rss['peak_while_writing']} | |",
            (f"| warm start: snapshot load + first {alone['queries']} queries (s), one worker alone | {alone['load_s']} + "
             f"{alone['first_queries_s']} | 30 at 1M |"),
            "| two workers started at once with the encoder: PSS each (MB) | "
            + " / ".join(f"{w['pss_mb']:.0f}" for w in pair) + " | 2,048 at 1M |"]


def report(r: dict) -> str:
    s, q = r["search"], r["quality"]
    lines = [f"# {r['n']:,} x {r['dim']} vectors, measured (`{r['command']}`)", "",
             f"Machine: {r['machine']['cpu']}, {r['machine']['cores']} cores, {r['memory_before_queries']['MemTotal']} GiB "
             f"memory; {r['machine']['date'][:16]} UTC. Load average before / after: "
             f"{', '.join(f'{x:.1f}' for x in r['load_average_before'])} / {', '.join(f'{x:.1f}' for x in r['load_average_after'])}.", "",
             "| what | measured | target |", "|---|---|---|",
             f"| index the runtime picks | `{r['build']['index_type']}` | |"]
    for attempt, row in s.items():
        lines.append(f"| search p50 / p99 ms (one query, k=40), {attempt} | {row['p50_ms']:.1f} / {row['p99_ms']:.1f} | 20 / 100 |")
    lines += probes_split_rows(r)
    lines += [f"| recall@10 vs exact | {list(s.values())[-1]['recall_at_10']:.3f} | 0.95 |",
              f"| cross-context top-1 / AP@100 %, exact vs this index | {q['exact']['top1_pct']} / {q['exact']['ap_at_100_pct']} vs "
              f"{q['approximate']['top1_pct']} / {q['approximate']['ap_at_100_pct']} | within 0.5 |",
              f"| one registration: store upsert p50 / p99 ms | {r['registration_store_upsert']['p50_ms']:.2f} / "
              f"{r['registration_store_upsert']['p99_ms']:.2f} | 20 |",
              f"| index memory (codes + ids), MB | {r['index_memory_mb']:.0f} | |",
              f"| float16 re-rank rows on disk, GiB | {r['rerank_rows_gib']} | |",
              f"| page cache before the queries (Cached / MemAvailable, GiB) | {r['memory_before_queries']['Cached']} / "
              f"{r['memory_before_queries']['MemAvailable']} | |",
              f"| build: training sample drawn / quantisers trained / all (s) | {r['build']['sample_s']} / {r['build']['train_s']} / "
              f"{r['build']['total_s']} | |",
              f"| peak memory of the process (RSS, GiB) | {r['peak_rss_gib']} | |", *fold_rows(r), *share_rows(r), "",
              "Steps (s): " + "; ".join(f"{k}: {v}" for k, v in r["steps"].items())]
    if r.get("sweep"):
        lines += ["", "Search settings on the same index, the runtime's first (the rows of each query's first 1,000 "
                  "candidates cached by the passes before; deeper re-ranks and wider retries read more of the "
                  f"{r['rerank_rows_gib']} GiB file, which the page cache may not hold):", "",
                  "| nprobe | re-rank | retry nprobe / re-rank / below | p50 / p99 ms | recall@10 | top-1 / AP@100 % "
                  "| retried % | p50 ms: codes alone / first pass |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {w['nprobe']} | {w['rerank']} | {w['retry_nprobe']} / {w['retry_rerank']} / "
                  f"{w.get('retry_below', '')} | {w['p50_ms']:.1f} / "
                  f"{w['p99_ms']:.1f} | {w['recall_at_10']:.3f} | {w['quality']['top1_pct']} / {w['quality']['ap_at_100_pct']} "
                  f"| {w.get('retried_pct', '')} | {w.get('codes_p50_ms', '')} / {w.get('first_pass_p50_ms', '')} |"
                  for w in r["sweep"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
