"""The ingest benchmark's summary, markdown table and plot (bench.ingest)."""
import json
from pathlib import Path


def percentile(values: list[float], q: float) -> float | None:
    values = sorted(v for v in values if v is not None)
    return round(values[min(len(values) - 1, int(q * len(values)))], 1) if values else None


def summarise(result: dict) -> dict:
    bare = result["bare"]["images_per_s"]
    idle = result["idle_before"] + result["idle_after"]
    during = result["import"]["attributions"]
    summary = {
        "bare_images_per_s": round(bare, 2),
        "ingest_images_per_s": result["import"]["images_per_s"],
        "ingest_ratio": round(result["import"]["images_per_s"] / bare, 3),
        **{f"ingest_ratio_{key}": round(result["import"][key]["images_per_s"] / bare, 3)
           for key in ("with_attributions", "without_attributions") if key in result["import"]},
        "attribution_idle_p95_ms": percentile([s["client_ms"] for s in idle], 0.95),
        "attribution_import_p95_ms": percentile([s["client_ms"] for s in during], 0.95),
        "attribution_idle_p50_ms": percentile([s["client_ms"] for s in idle], 0.5),
        "attribution_import_p50_ms": percentile([s["client_ms"] for s in during], 0.5),
        "attribution_idle_server_p95_ms": percentile([s["server_ms"] for s in idle], 0.95),
        "attribution_import_server_p95_ms": percentile([s["server_ms"] for s in during], 0.95),
        "attributions_idle": len(idle), "attributions_during_import": len(during),
        "enqueue": {workers: {"saturation_per_s": round(r["closed_loop"]["rate_per_s"], 1),
                              "open_loop_rate_per_s": round(r["open_loop_half_rate"]["offered_per_s"], 1),
                              "open_loop_p50_ms": r["open_loop_half_rate"].get("p50_ms"),
                              "open_loop_p99_ms": r["open_loop_half_rate"].get("p99_ms"),
                              "errors": r["closed_loop"]["errors"] + r["open_loop_half_rate"]["errors"]}
                    for workers, r in result["enqueue"].items()},
    }
    waits = result.get("wait_overhead") or []
    summary["wait_client_p50_ms"] = percentile([w["client_ms"] for w in waits], 0.5)
    summary["wait_server_p50_ms"] = percentile([w["server_ms"] for w in waits], 0.5)
    summary["wait_overhead_p50_ms"] = percentile([w["client_ms"] - w["server_ms"] for w in waits
                                                  if w["server_ms"] is not None], 0.5)
    summary["wait_enqueue_p50_ms"] = percentile([w.get("enqueue_ms") for w in waits], 0.5)
    summary["wait_own_p50_ms"] = (round(summary["wait_overhead_p50_ms"] - summary["wait_enqueue_p50_ms"], 1)
                                  if summary["wait_overhead_p50_ms"] is not None and summary["wait_enqueue_p50_ms"] is not None
                                  else None)
    summary["wait_samples"] = len(waits)
    summary["attribution_p95_increase_ms"] = (
        round(summary["attribution_import_p95_ms"] - summary["attribution_idle_p95_ms"], 1)
        if summary["attribution_import_p95_ms"] is not None and summary["attribution_idle_p95_ms"] is not None else None)
    return summary


def markdown(result: dict) -> str:
    s, m = result["summary"], result["machine"]
    rows = [
        ("ingest through POST /sources/bulk / bare decode+embed, all slices", f"{s['ingest_images_per_s']} / "
         f"{s['bare_images_per_s']} images/s = **{s['ingest_ratio']}**", ">= 0.8"),
        *[(f"the same, slices {label}", f"{result['import'][key]['images_per_s']} images/s = "
           f"**{s['ingest_ratio_' + key]}**", ">= 0.8")
          for key, label in (("with_attributions", "serving one attribution a second"),
                             ("without_attributions", "with no attribution offered"))
          if "ingest_ratio_" + key in s],
        ("attribution p95, idle -> during the import (1/s offered)",
         f"{s['attribution_idle_p95_ms']} -> {s['attribution_import_p95_ms']} ms "
         f"(**{s['attribution_p95_increase_ms']:+} ms**)", "<= +250 ms"),
        ("attribution p50, idle -> during the import", f"{s['attribution_idle_p50_ms']} -> "
         f"{s['attribution_import_p50_ms']} ms", ""),
        ("server-side p95 (created -> finished), idle -> import", f"{s['attribution_idle_server_p95_ms']} -> "
         f"{s['attribution_import_server_p95_ms']} ms", ""),
        ("`?wait` end to end vs the job's created -> finished, p50 (idle, sequential)",
         f"{s.get('wait_client_p50_ms')} vs {s.get('wait_server_p50_ms')} ms: "
         f"+{s.get('wait_overhead_p50_ms')} ms, of which the same POST without wait (upload, admission, "
         f"enqueue) takes {s.get('wait_enqueue_p50_ms')} ms: **+{s.get('wait_own_p50_ms')} ms** from waiting "
         f"(n={s.get('wait_samples')})", "<= +10 ms"),
    ]
    for workers, e in s["enqueue"].items():
        rows.append((f"POST /attribute saturation, {workers} API process(es), 32 connections",
                     f"**{e['saturation_per_s']}/s**", "report; ~90/s before"))
        rows.append((f"open loop at {e['open_loop_rate_per_s']}/s (50 %), {workers} API process(es)",
                     f"p50 {e['open_loop_p50_ms']} ms, **p99 {e['open_loop_p99_ms']} ms**", "p99 <= 50 ms"))
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    return f"""# Ingest and enqueue benchmark

Machine: {m['cpu']}, {m['cores']} cores, CPU only; 1-min load average {m['load_average'][0]:.1f} before,
{m['load_average_after'][0]:.1f} after (the API, worker and this client share the cores); ratios measured
side by side in this run are what to read. Commit {result['git']}; command: `python -m bench.ingest` with
{json.dumps(result['args'])}.
Worker settings: {json.dumps(result['settings'])}. Workers: {_workers(result)}.

| what | measured | target |
|---|---|---|
{table}

Bare throughput: the worker's own pipeline (read, decode and preprocess in a thread pool, forward) in
the benchmark process, {result['bare_runs'][0]['images']} images at a time, before the import and then every
{result['args']['slice_seconds']} s of it, while the whole stack is frozen (SIGSTOP; the import's time excludes those intervals):
{', '.join(str(b['images_per_s']) for b in result['bare_runs'])} images/s. Each slice's rate over the mean of its two
neighbours: {', '.join(_slice_mark(x) for x in result['slices'])}
(* no attributions offered; u: bulk requests were still being uploaded when the slice began). Ingest: images embedded over the unfrozen time from the first bulk request to
the last image embedded ({result['import']['images']} images in {result['import']['seconds']} s, works of
{result['args']['per_item']} images, {result['args']['per_request']} works per request,
{result['args']['uploaders']} uploaders; report {json.dumps(result['import']['upload']['summary'])}). Attribution latency: submit to result seen
by {_client(result)}, {s['attributions_idle']} idle and {s['attributions_during_import']} during the
import. Enqueue: no worker runs (the queue only grows), aiohttp client in this process on the same cores.
"""


def _slice_mark(slice_: dict) -> str:
    return (f"{slice_['ratio_to_neighbours']}{'' if slice_['attributions_offered'] else '*'}"
            f"{'u' if slice_.get('uploading') else ''}")


def _client(result: dict) -> str:
    poll_ms = float(result["args"]["poll_ms"])
    return f"a client polling every {poll_ms:g} ms" if poll_ms > 0 else "a client asking with `?wait=30`"


def _workers(result: dict) -> str:
    if result["args"]["layout"] == "split":
        return ("an embedding worker (`--queues embed`) beside a dedicated attribution worker (`--queues attribute`), "
                "the default launch")
    return "one, serving both queues, attribution first (`ATTRIB_ATTRIBUTION_WORKERS=0`)"


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(16, 4))
    for name, samples in (("idle (before)", result["idle_before"]), ("during import", result["import"]["attributions"]),
                          ("idle (after)", result["idle_after"])):
        left.plot([s["at_s"] for s in samples], [s["client_ms"] for s in samples], ".", label=name)
    left.set(xlabel="seconds into the phase (the import: into each slice)", ylabel="attribution latency (ms)",
             title="1 attribution/s offered")
    left.legend()
    slices = result["slices"]
    middle.bar(range(len(slices)), [s["images_per_s"] for s in slices],
               color=["tab:blue" if s["attributions_offered"] else "tab:green" for s in slices],
               label="import slice (blue: serving 1 attribution/s)")
    middle.plot([i - 0.5 for i in range(len(result["bare_runs"]))], [b["images_per_s"] for b in result["bare_runs"]],
                "k.-", label="bare run (stack frozen)")
    middle.set(xlabel="slice", ylabel="images/s", title="import slices between bare runs")
    middle.legend(fontsize="small")
    enqueue = result["summary"]["enqueue"]
    labels = [f"{w} API proc." for w in enqueue]
    right.bar(labels, [e["saturation_per_s"] for e in enqueue.values()])
    right.set(ylabel="POST /attribute per second (32 connections)", title="enqueue saturation")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_report(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    result["summary"] = summarise(result)
    (out / "ingest.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "ingest.md").write_text(markdown(result))
    plot(result, out / "ingest.png")
