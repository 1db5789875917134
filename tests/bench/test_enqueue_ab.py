"""The enqueue A/B bench's report (bench/enqueue_ab.py): the table shows every run and each side's median."""
from bench.enqueue_ab import markdown


def _run(round_, side, p99, server_p99, collections):
    return {"round": round_, "side": side, "env": {"ATTRIB_GC_FREEZE": str(side == "after").lower()},
            "saturation_per_s": 120.0, "open_p50_ms": 15.0, "open_p99_ms": p99,
            "open_server": {"requests": 1700, "p99_ms": server_p99} if server_p99 else {"requests": 0},
            "open_slow_collections": {"count": collections, "by_generation": {"2": collections},
                                      "longest_ms": 90.0, "total_ms": 90.0 * collections}}


def test_markdown_lists_every_run_and_each_sides_median():
    result = {"command": "python -m bench.enqueue_ab --repos . .", "runs": [
        _run(0, "before", 30.0, 25.0, 1), _run(0, "after", 20.0, 18.0, 0),
        _run(1, "before", 50.0, 45.0, 2), _run(1, "after", 40.0, None, 3),
        _run(2, "before", 10.0, 9.0, 0), _run(2, "after", 60.0, 50.0, 1)],
        "machine": {"cpu": "Test CPU", "cores": 2, "date": "2026-11-27T12:00:00+00:00"}}
    text = markdown(result)
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 6
    assert "| 1 | before | ATTRIB_GC_FREEZE=false | 120.0 | 15.0 / 50.0 | 45.0 | 2 (0/0/2) | 90.0 | 180.0 |" in rows
    assert "| 1 | after | ATTRIB_GC_FREEZE=true | 120.0 | 15.0 / 40.0 | - | 3 (0/0/3) |" in rows[3]
    assert "- before: median open-loop p99 30.0 ms over 3 runs (range 10.0-50.0), server's own 25.0 ms" in text
    assert "- after: median open-loop p99 40.0 ms over 3 runs (range 20.0-60.0), server's own 34.0 ms" in text
    assert "Test CPU, 2 cores, 2026-11-27" in text
