"""The snapshot/rebuild stall bench (bench/snapshot_stall.py) and the delta-cost bench (bench/delta_cost.py):
a job counts as "during" when it overlapped the call at all, the summary takes medians per mode, and the
delta bench runs end to end at a toy size."""
import json

from bench import delta_cost
from bench.snapshot_stall import MODES, Jobs, markdown, stats, summary


def test_a_job_that_overlaps_the_call_counts_as_during():
    jobs = Jobs(engine=None, queries=None, rng=None)
    jobs.samples = [(0.0, 100.0), (0.95, 6000.0), (7.5, 10.0), (9.0, 5.0)]  # (start s, ms)
    assert jobs.between(1.0, 8.0) == [6000.0, 10.0]  # began before the call and was still waiting
    assert jobs.between(0.0, 0.05) == [100.0]


def test_slow_jobs_are_counted():
    assert stats([10.0, 60.0, 120.0, 40.0]) == {"jobs": 4, "p50_ms": 50.0, "p99_ms": 118.2, "max_ms": 120.0,
                                                 "over_50_ms": 2, "over_100_ms": 1}


def test_summary_and_table_per_mode():
    def row(mode, round_, write_s, longest):
        return {"mode": mode, "round": round_, "write_s": write_s,
                "idle": {"jobs": 10, "p50_ms": 7.0, "p99_ms": 12.0, "max_ms": 15.0},
                "during": {"jobs": 3, "p50_ms": 20.0, "p99_ms": longest, "max_ms": longest}}
    rounds = [row("held", 0, 6.0, 5900.0), row("copied", 0, 7.0, 30.0), row("copied", 1, 8.0, 120.0),
              row("held", 1, 2.0, 2700.0), row("held", 2, 7.0, 7400.0), row("copied", 2, 7.5, 33.0)]
    result = summary(rounds, MODES)
    assert result["held"]["max_ms"] == 5900.0 and result["copied"]["max_ms"] == 33.0
    assert result["copied"]["write_s"] == 7.5
    text = markdown({"machine": {"cpu": "Test CPU", "cores": 2, "date": "2026-11-27T15:00"}, "n": 1000, "dim": 8,
                     "index_type": "IDMap2,Flat", "rebuild": False, "base_bytes": 10**6, "rounds": rounds,
                     "summary": result, "command": "python -m bench.snapshot_stall --n 1000"})
    assert "| held | 1 | 2.0 | 3 | 20.0 / 2700.0 / 2700.0 | - / - | 7.0 / 12.0 |" in text
    assert "| copied | 7.5 | 3.0 | 33.0 / 33.0 | 12.0 |" in text


def test_delta_cost_runs_at_a_toy_size(tmp_path):
    assert delta_cost.main(["--base", "300", "--deltas", "0", "40", "--dim", "16", "--queries", "5",
                            "--rounds", "2", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "delta-cost.json").read_text())
    assert [(r["delta"], r["way"]) for r in result["rows"]] == [
        (0, "default"), (0, "one thread"), (40, "default"), (40, "one thread")]
    assert result["index_type"] == "IDMap2,Flat"
    assert "| 40 | 0.0 | one thread |" in (tmp_path / "delta-cost.md").read_text()
    from indexing.backends import faiss as backend
    assert backend.DELTA_SCAN_THREADS == 1  # the bench leaves the module as it found it
