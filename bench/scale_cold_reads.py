"""The re-rank's reads when the page cache does not hold the float16 copies (issue 8: a 1M base keeps
2.4 GiB of them in `vectors.npy`, read per query with `os.pread`; at 10M they are 24 GB).

    PYTHONPATH=. .venv/bin/python -m bench.scale_cold_reads            # 1M x 1280 rows (a 2.4 GiB file)
    PYTHONPATH=. .venv/bin/python -m bench.scale_cold_reads --rows 100000 --queries 20

What one query reads is `depth` rows at positions spread over the whole file (the ids of the IVF lists
it probes, in insertion order), so the cost depends on the depth and the disk, not on what the vectors
hold: the file is filled with random float16 rows. Each query reads `depth` random rows through the
runtime's own reader (indexing.backends.exact_rows.FileRows), warm (the file in the page cache) and cold
(the file's pages dropped with posix_fadvise(DONTNEED) before every query, so each row is a disk read),
interleaved query by query. Depths: the default re-rank (ATTRIB_ANN_RERANK) and the retry's. Beside
the runtime's serial reader, the same reads split over --threads threads are measured, the
alternative it does not use.
Writes bench/results/scale/cold-reads.json and cold-reads.md; the machine is named in both."""
import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.attribution import machine
from bench.scale_measure import percentiles
from common.settings import Settings
from indexing.backends.exact_rows import DTYPE, FileRows


def rows_file(path: Path, rows: int, dim: int, chunk: int = 50_000) -> Path:
    """A C-ordered float16 .npy of `rows` x `dim` random rows, written in chunks (never whole in memory)."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=DTYPE, shape=(rows, dim))
    rng = np.random.default_rng(0)
    for start in range(0, rows, chunk):
        out[start:start + chunk] = rng.standard_normal((min(chunk, rows - start), dim), np.float32).astype(DTYPE)
    out.flush()
    del out
    partial.rename(path)
    return path


def drop_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read_through(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def threaded_take(rows: FileRows, positions: np.ndarray, pool: ThreadPoolExecutor, parts: int) -> np.ndarray:
    """The alternative the runtime does not use: the same preads split over `parts` threads (os.pread
    releases the GIL), so a cold query keeps several disk reads in flight."""
    out = np.empty((len(positions), rows.shape[1]), DTYPE)

    def read(indices: np.ndarray) -> None:
        for i in indices:
            offset = rows.offset + int(positions[i]) * rows.row_bytes
            out[i] = np.frombuffer(os.pread(rows.fd, rows.row_bytes, offset), DTYPE)
    list(pool.map(read, np.array_split(np.argsort(positions, kind="stable"), parts)))
    return out.astype(np.float32)


def measure(path: Path, depths: list[int], queries: int, threads: int) -> dict:
    """Per depth and reader (the runtime's serial FileRows.take, and `threads` threads), warm and cold
    timings, interleaved query by query."""
    rows = FileRows.open(path)
    rng = np.random.default_rng(1)
    pool = ThreadPoolExecutor(threads)
    readers = {"serial": rows.take, f"{threads} threads": lambda p: threaded_take(rows, p, pool, threads)}
    read_through(path)  # every page once, so the warm runs hit the cache
    results = {}
    for depth in depths:
        times = {(reader, state): [] for reader in readers for state in ("warm", "cold")}
        for _ in range(queries):
            positions = rng.choice(len(rows), depth, replace=False)
            for reader, take in readers.items():
                for state in ("cold", "warm"):  # cold first: its reads bring the rows the warm run then finds
                    if state == "cold":
                        drop_from_page_cache(path)
                    started = time.perf_counter()
                    take(positions)
                    times[reader, state].append((time.perf_counter() - started) * 1000)
        results[depth] = {reader: {state: percentiles(times[reader, state]) for state in ("warm", "cold")}
                          for reader in readers}
        for reader in readers:
            cold_p50 = results[depth][reader]["cold"]["p50_ms"]
            results[depth][reader]["cold_read_us_per_row_p50"] = round(cold_p50 * 1000 / depth, 1)
    pool.shutdown()
    read_through(path)  # leave the file cached, as a serving host would keep it
    return results


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"# Re-rank reads with a cold page cache ({result['rows']:,} x {result['dim']} float16, "
             f"{result['file_gib']} GiB)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores; the disk under `{result['path']}` (a VM's virtual disk). "
             f"Command: `{result['command']}`. {result['queries']} queries per depth, warm and cold interleaved; "
             "cold = the file's pages dropped (posix_fadvise DONTNEED) before each query.", "",
             "| rows read per query | reader | warm p50 / p99 ms | cold p50 / p99 ms | cold, per row (p50) |",
             "|---|---|---|---|---|"]
    for depth, readers in result["depths"].items():
        for reader, r in readers.items():
            lines.append(f"| {depth} | {reader}{' (the runtime)' if reader == 'serial' else ''} | "
                         f"{r['warm']['p50_ms']} / {r['warm']['p99_ms']} | {r['cold']['p50_ms']} / "
                         f"{r['cold']['p99_ms']} | {r['cold_read_us_per_row_p50']} µs |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_cold_reads", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--threads", type=int, default=8, help="threads of the alternative reader measured beside")
    parser.add_argument("--work", type=Path, default=Path("bench/out/scale"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/scale"))
    args = parser.parse_args(argv)
    settings = Settings()
    path = rows_file(args.work / f"cold-rows-{args.rows}x{args.dim}.npy", args.rows, args.dim)
    depths = [settings.ann_rerank, settings.ann_retry_rerank]
    command = "python -m bench.scale_cold_reads" + (f" --rows {args.rows}" if args.rows != 1_000_000 else "")
    result = {"command": command,
              "machine": machine(), "rows": args.rows, "dim": args.dim, "path": str(path.parent),
              "file_gib": round(path.stat().st_size / 2**30, 2), "queries": args.queries,
              "threads": args.threads, "depths": measure(path, depths, args.queries, args.threads)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cold-reads.json").write_text(json.dumps(result, indent=2))
    (args.out / "cold-reads.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
