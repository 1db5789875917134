"""The scale benchmark's markdown table and plots (PNG, git-ignored) from scale.json."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)


def _n(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"


def table(results: dict) -> list[str]:
    rows = results["sizes"]
    head = "| what | " + " | ".join(f"{_n(r['n'])} x {r['dim']}" for r in rows) + " |"
    lines = [head, "|---" * (len(rows) + 1) + "|"]

    def add(label, cell):
        lines.append(f"| {label} | " + " | ".join(cell(r) for r in rows) + " |")

    add("index the runtime picks", lambda r: f"`{r['runtime_pick']['index_type']}`")
    add("search p50 / p99 (ms, one query, k=40)",
        lambda r: f"{r['runtime_pick']['p50_ms']:.1f} / {r['runtime_pick']['p99_ms']:.1f}")
    add("recall@10 vs exact", lambda r: f"{r['runtime_pick']['recall_at_10']:.3f}")
    add("the other index: type, p50 / p99 ms, recall@10", lambda r: (
        f"`{r['other']['index_type']}` {r['other']['p50_ms']:.1f} / {r['other']['p99_ms']:.1f}, "
        f"{r['other']['recall_at_10']:.3f}") if "other" in r else "not run")
    add("build (train + add), s", lambda r: f"{r['runtime_pick']['build_s']}")
    add("one registration: store upsert p50 / p99 (ms)",
        lambda r: f"{r['registration']['store_upsert']['p50_ms']:.2f} / {r['registration']['store_upsert']['p99_ms']:.2f}")
    add("one registration: log sync p50 / p99 (ms; log of N rows, rows read)", lambda r: (
        f"{r['registration']['log_sync']['p50_ms']:.2f} / {r['registration']['log_sync']['p99_ms']:.2f} "
        f"({r['registration']['log_sync']['log_rows_read_per_sync']})"))
    add("worker start, warm: snapshot load + 50 queries (s)",
        lambda r: f"{r['start']['alone']['load_s']:.2f} + {r['start']['alone']['first_queries_s']:.2f}")
    add("worker start, cold: database -> index (s)",
        lambda r: f"{r['start']['cold']['seconds']:.1f}" if "cold" in r["start"] else "not run")
    add("index memory (MB, base + ids)", lambda r: f"{r['start']['index_memory_mb']:.0f}")
    add("PSS per worker, two sharing one snapshot (MB, index only)",
        lambda r: " / ".join(f"{w['pss_mb']:.0f}" for w in r["start"]["two_workers"]))
    add("RSS alone (MB, index only)", lambda r: f"{r['start']['alone']['rss_mb']:.0f}")
    add("PSS per worker, two sharing one snapshot, each with the encoder loaded (MB)",
        lambda r: " / ".join(f"{w['pss_mb']:.0f}" for w in r["start"]["two_workers_with_model"])
        if "two_workers_with_model" in r["start"] else "not run")
    add("Milvus (milvus-lite): index type", lambda r: f"`{r['milvus']['index_type']}`" if "milvus" in r else "not run")
    add("Milvus: search p50 / p99 (ms, one query, k=40), recall@10", lambda r: (
        f"{r['milvus']['p50_ms']:.1f} / {r['milvus']['p99_ms']:.1f}, {r['milvus']['recall_at_10']:.3f}")
        if "milvus" in r else "not run")
    add("Milvus: load (vectors/s, incl. flush)",
        lambda r: f"{r['milvus']['load_vectors_per_s']:,}" if "milvus" in r else "not run")
    add("Milvus: one registration, upsert p50 + first search after it p50 (ms)", lambda r: (
        f"{r['milvus']['registration']['upsert']['p50_ms']:.1f} + "
        f"{r['milvus']['registration']['first_search_after']['p50_ms']:.1f}") if "milvus" in r else "not run")
    return lines


def study_lines(results: dict) -> list[str]:
    largest = results["sizes"][-1]
    if "nprobe_sweep" not in largest:
        return []
    lines = ["", f"Approximate index at {_n(largest['n'])}: nprobe sweep", "",
             "| nprobe | p50 ms | p99 ms | recall@10 |", "|---|---|---|---|"]
    lines += [f"| {s['nprobe']} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['recall_at_10']:.3f} |"
              for s in largest["nprobe_sweep"]]
    if "rerank_sweep" in largest:
        lines += ["", f"Re-rank depth at {_n(largest['n'])} (candidates scored again exactly; 0 = the codes' "
                      "own ranking), default nprobe", "",
                  "| re-rank | p50 ms | p99 ms | recall@10 |", "|---|---|---|---|"]
        lines += [f"| {s['rerank']} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['recall_at_10']:.3f} |"
                  for s in largest["rerank_sweep"]]
    q = largest["quality"]
    for row in results["sizes"]:
        if "codes" in row:
            c = row["codes"]
            lines += ["", f"The previous default at {_n(row['n'])}, `{c['index_type']}` without re-rank: "
                          f"{c['index_memory_mb']:.0f} MB (the runtime's pick: {row['start']['index_memory_mb']:.0f} MB), "
                          f"p50 {c['p50_ms']:.1f} ms, p99 {c['p99_ms']:.1f} ms, recall@10 {c['recall_at_10']:.3f}, "
                          f"build {c['build_s']} s"]
    lines += ["", f"Cross-context attribution at {_n(largest['n'])} ({results['real_queries']} queries, "
              f"{results['subjects']} works), approximate index forced:", "",
              "| search | top-1 % | AP@100 % |", "|---|---|---|"]
    lines += [f"| {name} | {m['top1_pct']:.2f} | {m['ap_at_100_pct']:.2f} |" for name, m in q.items()]
    return lines


def plot(results: dict, out: Path) -> None:
    rows = results["sizes"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ns = [r["n"] for r in rows]
    axes[0].plot(ns, [r["runtime_pick"]["p50_ms"] for r in rows], "o-", label="runtime pick p50")
    axes[0].plot(ns, [r["runtime_pick"]["p99_ms"] for r in rows], "o--", label="runtime pick p99")
    lite = [r for r in rows if "milvus" in r]
    if lite:
        axes[0].plot([r["n"] for r in lite], [r["milvus"]["p50_ms"] for r in lite], "s-", label="milvus-lite p50")
    axes[0].set(xscale="log", yscale="log", xlabel="vectors", ylabel="ms", title="search latency")
    axes[1].plot(ns, [r["registration"]["store_upsert"]["p50_ms"] for r in rows], "o-", label="store upsert")
    axes[1].plot(ns, [r["registration"]["log_sync"]["p50_ms"] for r in rows], "o-", label="log sync")
    axes[1].set(xscale="log", xlabel="vectors / log rows", ylabel="ms (p50)", title="one registration")
    sweep = rows[-1].get("nprobe_sweep", [])
    axes[2].plot([s["p50_ms"] for s in sweep], [s["recall_at_10"] for s in sweep], "o-")
    for s in sweep:
        axes[2].annotate(str(s["nprobe"]), (s["p50_ms"], s["recall_at_10"]))
    axes[2].set(xlabel="p50 ms", ylabel="recall@10", title=f"IVF nprobe at {_n(rows[-1]['n'])}")
    for ax in axes[:2]:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "scale.png", dpi=100)
    plt.close(fig)


def _load(results: dict, key: str) -> str:
    return f"{results[key][0]:.1f}" if key in results else "not recorded"


def write_report(results: dict, out: Path) -> None:
    m = results["machine"]
    lines = [f"# Scale benchmark ({results['command']})", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['date']}. Shared with other "
             "jobs at the time, so timings are noisy; ratios inside one run are the reliable part "
             f"(1-min load average {_load(results, 'load_average_before')} at the start, "
             f"{_load(results, 'load_average_after')} at the end).", "",
             f"Vectors: {results['real_vectors']} real Lite0 features (the cross-context set's exemplars and "
             f"distractors) padded with samples of a per-cluster Gaussian mixture fitted to "
             + ("the distractors' features only, so padding behaves like more distractors"
                if results.get("pad_fit", "all") == "distractors" else
                f"them and to {results['real_extra']} other real images of the subjects (traffic half, "
                "DreamBooth photos), so padding also holds synthetic near-copies of the works")
             + f"; {results['real_queries']} real cross-context queries (never in the index).", ""]
    lines += table(results) + study_lines(results)
    if results.get("note"):
        lines += ["", f"Note: {results['note']}"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    plot(results, out)
