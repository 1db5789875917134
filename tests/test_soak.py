"""A short soak of the real stack (uvicorn API + worker subprocesses, SQLite, Redis): the same traffic as
`python -m bench.soak`, for ~25 s. Nothing may error, and every submitted job must end done."""
import json

import pytest

from bench.soak import main, memory_summary, percentile, slope_mb_per_min


def test_short_soak_has_no_errors_and_no_lost_jobs(tmp_path, capsys):
    out = tmp_path / "soak.json"
    assert main(["--minutes", "0.4", "--clients", "3", "--database", "sqlite", "--out", str(out)]) == 0
    report = json.loads(out.read_text())

    assert report["requests"] > 50
    assert report["errors"] == 0, report["error_samples"]
    assert report["unexpected"] == 0, report["unexpected_samples"]
    jobs = report["jobs"]
    assert jobs["attribution_submitted"] > 0 and jobs["embed_submitted"] > 0
    assert jobs["lost"] == 0 and jobs["failed"] == 0, jobs
    assert jobs["done"] == jobs["attribution_submitted"] + jobs["embed_submitted"]
    assert jobs["dedupe_mismatches"] == 0
    for role in ("api", "worker"):
        memory = report["memory"][role]
        assert memory["samples"] >= 5 and 0 < memory["start_mb"] <= memory["max_mb"]
        assert abs(memory["slope_mb_per_min_second_half"]) < 1000  # a number, not NaN
    assert {"nproc", "cpu_model", "python", "date"} <= report["machine"].keys()
    assert "attribute_wait" in capsys.readouterr().out


def test_summaries():
    assert percentile([0.3, 0.1, 0.2], 50) == 0.2
    assert slope_mb_per_min([(0, 100.0), (60, 110.0), (120, 120.0)]) == pytest.approx(10.0)
    memory = memory_summary({"api": [(0, 50.0), (10, 80.0), (20, 81.0), (30, 82.0)]}, warmup_s=10, end_s=30)
    assert memory["api"]["start_mb"] == 80.0 and memory["api"]["max_mb"] == 82.0
