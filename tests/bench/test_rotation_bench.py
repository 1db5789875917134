"""bench/rotation.py: the codes-alone recall leaves the store's settings as it found them, and the table
shows each base against exact search."""
import numpy as np

from bench.rotation import codes_alone, markdown
from indexing.backends.faiss import IndexParams, build_store


def test_codes_alone_is_measured_without_the_rerank_and_restores_it():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = build_store("enc", 32, np.arange(3000), vectors, IndexParams(ann_threshold=100, nprobe=4096, rerank=1500))
    exact = np.argsort(-(vectors[:20] @ vectors.T), axis=1)[:, :100]
    assert codes_alone(store, vectors[:20], exact) < 1.0  # 4-bit codes of isotropic rows misrank
    assert (store.rerank, store.retry_below) == (1500, IndexParams().retry_below)


def test_the_table_shows_each_base_against_exact_search():
    row = {"index_type": "RR1280,IVF1024,PQ320x4fs", "build_s": 80.0, "p50_ms": 9.0, "p99_ms": 40.0,
           "openmp_p50_ms": 20.0, "openmp_p99_ms": 70.0,
           "recall_at_10": 0.98, "codes_alone_recall_at_10": 0.5, "top1_pct": 53.44, "ap_at_100_pct": 57.69}
    text = markdown({"machine": {"cpu": "Test CPU", "cores": 2, "date": "2026-11-27T23:00"}, "n": 1000, "dim": 8,
                     "queries": 378, "exact": {"top1_pct": 53.7, "ap_at_100_pct": 58.11},
                     "bases": {"rotated": row}, "command": "python -m bench.rotation --n 1000"})
    assert "| rotated | `RR1280,IVF1024,PQ320x4fs` | 80.0 | 9.0 / 40.0 | 20.0 / 70.0 | 0.98 | 0.5 | 53.44 (-0.26) | 57.69 (-0.42) |" in text


def test_the_thread_setting_comes_back():
    from bench.rotation import base_scan_threads
    from indexing.backends import faiss as backend
    with base_scan_threads(0):
        assert backend.BASE_SCAN_THREADS == 0
    assert backend.BASE_SCAN_THREADS == 1


def test_round_medians_and_the_results_files(tmp_path):
    from bench.scale_measure import round_medians, write_result
    rounds = [{"p50_ms": 10.0, "p99_ms": 50.0, "recall_at_10": 0.9}, {"p50_ms": 30.0, "p99_ms": 70.0, "recall_at_10": 0.95},
              {"p50_ms": 20.0, "p99_ms": 90.0, "recall_at_10": 0.97}]
    assert round_medians(rounds) == {"p50_ms": 20.0, "p99_ms": 70.0, "recall_at_10": 0.95}
    assert round_medians(rounds, ("p50_ms",), prefix="openmp_") == {"openmp_p50_ms": 20.0}
    write_result(tmp_path / "out", "x", {"a": 1}, lambda r: f"a is {r['a']}\n")
    assert (tmp_path / "out" / "x.json").read_text() == '{\n  "a": 1\n}' and (tmp_path / "out" / "x.md").read_text() == "a is 1\n"


def test_the_table_says_whether_splitting_every_query_would_pay():
    split = {"codes_scanned": 125000, "split_from": 0, "rounds": 2, "runtime": {"p50_ms": 16.0, "p99_ms": 60.0},
             "one_thread": {"p50_ms": 14.6, "p99_ms": 66.0}}
    row = {"index_type": "RR1280,IVF1024,PQ320x4fs", "build_s": 80.0, "p50_ms": 9.0, "p99_ms": 40.0,
           "recall_at_10": 0.98, "codes_alone_recall_at_10": 0.5, "top1_pct": 53.44, "ap_at_100_pct": 57.69}
    result = {"machine": {"cpu": "Test CPU", "cores": 2, "date": "2026-11-28T02:00"}, "n": 1000, "dim": 8,
              "queries": 378, "exact": {"top1_pct": 53.7, "ap_at_100_pct": 58.11}, "command": "python -m bench.rotation"}
    assert "split" not in markdown({**result, "bases": {"rotated": row}})  # a run before the split: its table as it was
    text = markdown({**result, "bases": {"rotated": {**row, "probes_split_everywhere": split}}})
    assert "rotated ~125,000 codes a query: 16.0 / 60.0 against 14.6 / 66.0." in text


def test_the_table_shows_the_held_out_queries_against_exact_search():
    row = {"index_type": "RR1280,IVF1024,PQ320x4fs", "build_s": 80.0, "p50_ms": 9.0, "p99_ms": 40.0,
           "recall_at_10": 0.98, "codes_alone_recall_at_10": 0.5, "top1_pct": 53.44, "ap_at_100_pct": 57.69,
           "held_out": {"top1_pct": 60.0, "ap_at_100_pct": 62.5}}
    result = {"machine": {"cpu": "Test CPU", "cores": 2, "date": "2026-11-28T02:00"}, "n": 1000, "dim": 8,
              "queries": 378, "exact": {"top1_pct": 53.7, "ap_at_100_pct": 58.11}, "command": "python -m bench.rotation",
              "bases": {"rotated": row}, "held_out": {"queries": 390, "exact": {"top1_pct": 60.26, "ap_at_100_pct": 62.0}}}
    text = markdown(result)
    assert "Held out: the 390 traffic queries" in text
    assert "Exact search: top-1 / AP@100 60.26 / 62.0 %; rotated: 60.0 (-0.26) / 62.5 (+0.50)." in text
