"""bench.scale_10m's own parts that a 25-minute run depends on: the sweep option, the command it records,
the split of a query's time and the fold at its end (on a small store, not 10M)."""
import argparse

import numpy as np
import pytest

from bench.scale_10m import (
    SWEEP,
    Padded,
    command,
    fold_rows,
    fold_step,
    parse_sweep,
    peak_rss,
    reset_peak_rss,
    share_rows,
    probes_split_rows,
    split_time,
)
from bench.scale_measure import probes_split_against_one_thread
from indexing.backends.faiss import IndexParams, build_store


def test_sweep_option_reads_settings_and_refuses_malformed_ones():
    assert parse_sweep("512:500:1024:1500, 256:300:0:0") == [(512, 500, 1024, 1500), (256, 300, 0, 0)]
    assert parse_sweep("128:1000:512:3000:0.6") == [(128, 1000, 512, 3000, 0.6)]  # a retry threshold of its own
    for bad in ("", "512:500:1024", "0:500:1024:1500", "512:-1:0:0", "a:b:c:d", "1:2:3:4:5:6", "1:2:3:4:x"):
        with pytest.raises((argparse.ArgumentTypeError, ValueError)):
            parse_sweep(bad)


def test_command_records_the_index_settings_it_ran_under(monkeypatch):
    monkeypatch.setenv("ATTRIB_ANN_CODES", "PQ640x4fs")
    monkeypatch.setenv("ATTRIB_OTHER", "not an index setting")
    assert command(argparse.Namespace(n=10_000_000, sweep=SWEEP, share=False, fold=False)) == "ATTRIB_ANN_CODES=PQ640x4fs python -m bench.scale_10m"
    assert command(argparse.Namespace(n=300_000, sweep=[(8, 50, 0, 0)], share=False, fold=False)).endswith(
        "python -m bench.scale_10m --n 300000 --sweep 8:50:0:0")
    assert command(argparse.Namespace(n=10_000_000, sweep=SWEEP, share=True, fold=True)).endswith(
        "scale_10m --share --fold")


def test_peak_memory_counts_from_the_reset():
    held = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    del held
    try:
        before = reset_peak_rss()
    except OSError:
        pytest.skip("/proc/self/clear_refs cannot be written here")
    assert peak_rss() < before + 0.03  # the freed 64 MiB no longer counts
    held = np.ones(128 * 2**20 // 8)
    del held
    assert peak_rss() >= before + 0.11  # a peak already freed is still seen


def test_report_rows_of_the_shared_snapshot():
    worker = {"queries": 50, "load_s": 0.2, "first_queries_s": 3.1, "pss_mb": 1700.4}
    result = {"share": {"snapshot_write_s": 150.2, "snapshot_mb": 27000.0, "alone": worker,
                        "two_workers": [worker, worker], "two_workers_with_model": [worker, {**worker, "pss_mb": 1800.0}],
                        "writer_rss_gib": {"before": 4.0, "peak_while_writing": 4.1}}}
    rows = share_rows(result)
    assert rows[0] == "| snapshot written (s) / its size (MB) | 150.2 / 27000 | |"
    assert "| 4.0 / 4.1 |" in rows[1] and "0.2 + 3.1" in rows[2]
    assert rows[3].endswith("| 1700 / 1800 | 2,048 at 1M |")
    assert share_rows({}) == []


def test_split_time_counts_the_queries_a_retry_would_search_again():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    params = IndexParams(ann_threshold=100, ann_codes="Flat", nprobe=4, rerank=50, retry_below=0.9, retry_nprobe=16)
    store = build_store("enc", 16, np.arange(1, 3001), vectors, params)
    near = vectors[:10] + 0.01 * rng.standard_normal((10, 16)).astype(np.float32)  # best score ~1: no retry
    far = rng.standard_normal((30, 16)).astype(np.float32)  # unnormalised noise: best score far from 0.9
    far *= 0.01
    split = split_time(store, np.concatenate([near, far]))
    assert split["retried_pct"] == 75.0
    assert 0 < split["codes_p50_ms"] and 0 < split["first_pass_p50_ms"]
    store.retry_below = 0.0
    assert split_time(store, near)["retried_pct"] == 0.0


def test_the_fold_step_replaces_vectors_by_themselves_and_keeps_the_answers(tmp_path):
    """`--fold` runs after a 20-minute build: here on 3,000 vectors, so the step and its rows run."""
    from bench.scale_data import RealFeatures, top_k_of_chunks
    rng = np.random.default_rng(0)
    real_rows = rng.standard_normal((100, 16)).astype(np.float32)
    real_rows /= np.linalg.norm(real_rows, axis=1, keepdims=True)
    padded = Padded(real_rows, real_rows, 3000)
    queries = real_rows[:20] + 0.05 * rng.standard_normal((20, 16)).astype(np.float32)
    real = RealFeatures(real_rows, real_rows[:0], queries, np.arange(20) % 5, np.arange(5), [str(i) for i in range(5)])
    truth = top_k_of_chunks(((c * 100_000, chunk) for c, chunk in padded.chunks()), queries, 100)
    params = IndexParams(ann_threshold=100, ann_codes="Flat", nprobe=64, compact_after=500)
    base = np.concatenate([chunk for _, chunk in padded.chunks()])
    store = build_store("enc", 16, np.arange(3000), base, params, scratch=tmp_path)
    out = fold_step(store, padded, params, real, truth, tmp_path)
    assert out["changes"] == 500 and store.delta.ntotal == 500  # the old store got the replacements
    assert out["search"]["recall_at_10"] > 0.99  # every list visited: the folded base answers as exact search
    rows = fold_rows({"fold": out, "build": {"total_s": 1113.7}})
    assert "fold of 500 replaced vectors" in rows[0] and rows[0].endswith("| a build: 1113.7 s |")
    assert fold_rows({}) == []


def test_probes_split_against_one_thread_measures_both_ways_and_restores_the_runtime(monkeypatch):
    """The 10M table's row: the runtime's way (probes split past PARALLEL_SCAN_FROM codes) against one
    thread, interleaved; same answers both ways, and the runtime's threshold is back after."""
    from indexing.backends import faiss as backend
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = build_store("enc", 16, np.arange(3000), vectors,
                        IndexParams(ann_threshold=100, ann_codes="Flat", lists=16, nprobe=16, retry_below=0.0))
    queries = vectors[:12] + 0.05 * rng.standard_normal((12, 16)).astype(np.float32)
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    monkeypatch.setattr(backend, "PARALLEL_SCAN_FROM", 1000)
    out = probes_split_against_one_thread(store, queries, truth)
    assert backend.PARALLEL_SCAN_FROM == 1000
    assert out["codes_scanned"] == 3000 and out["split_from"] == 1000 and out["rounds"] == 2
    assert out["runtime"]["recall_at_10"] == out["one_thread"]["recall_at_10"] == 1.0  # every list: exact
    rows = probes_split_rows({"probes_split": out})
    assert "probes split over FAISS's threads: ~3,000 codes a query" in rows[0] and rows[0].endswith("| 20 / 100 |")
    assert "(one thread:" in probes_split_rows({"probes_split": {**out, "split_from": 500_000}})[0]
    assert probes_split_rows({}) == []
