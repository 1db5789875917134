"""The fold benches: bench/fold.py folds as much as the runtime would before training again, and
bench/snapshot_stall.py --fold renews a base both ways (a rebuild from the database, a fold) end to
end at a toy size."""
import json

from bench import snapshot_stall
from bench.fold import fewest_trained
from indexing.backends.faiss import IndexParams


def test_the_widest_fold_stops_where_the_index_type_would_change():
    params = IndexParams()
    assert fewest_trained(400_000, 1280, params) == 200_000  # half: the growth allowed, same 512 lists
    at_1m = fewest_trained(1_000_000, 1280, params)  # 1,024 lists; 524,287 vectors get 512
    assert at_1m == 524_288 and params.factory(at_1m - 1, 1280) != params.factory(1_000_000, 1280)


def test_the_fold_stall_bench_renews_the_base_both_ways(tmp_path):
    assert snapshot_stall.main(["--fold", "--n", "400", "--dim", "16", "--delta", "50", "--rounds", "1",
                                "--work", str(tmp_path / "work"), "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "fold-stall-400.json").read_text())
    rounds = {r["mode"]: r for r in result["rounds"]}
    assert set(rounds) == {"rebuild", "fold"} and result["delta"] == 50
    assert rounds["fold"]["trained_count"] == 350  # the base it started from: folded, not trained again
    assert rounds["rebuild"]["trained_count"] >= 400  # everything in the database, the jobs' registrations too
    assert "a fold beside a rebuild" in (tmp_path / "fold-stall-400.md").read_text()


def test_the_rows_bench_folds_both_ways_and_only_one_copies_the_rows(tmp_path, monkeypatch):
    import os

    import numpy as np

    from indexing.backends.faiss import build_store
    store = build_store("enc", 16, np.arange(300), np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32),
                        IndexParams(ann_threshold=100, rerank=50), scratch=tmp_path / "scratch")
    with snapshot_stall.rows_linked(False):
        store.save(tmp_path / "copied")
    store.save(tmp_path / "linked")  # the runtime's way again once the block ends
    inode = os.fstat(store.rows.fd).st_ino
    assert os.stat(tmp_path / "copied" / "vectors.npy").st_ino != inode
    assert os.stat(tmp_path / "linked" / "vectors.npy").st_ino == inode

    monkeypatch.setenv("ATTRIB_ANN_THRESHOLD", "100")  # an approximate base, so that there are rows,
    monkeypatch.setenv("ATTRIB_ANN_LISTS", "16")  # whose type (lists, PQ from 2,000) the jobs' registrations keep
    assert snapshot_stall.main(["--fold", "--rows", "--n", "3000", "--dim", "16", "--delta", "50", "--rounds", "1",
                                "--work", str(tmp_path / "work"), "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "fold-rows-stall-3000.json").read_text())
    assert "IVF16," in result["index_type"] and "--fold --rows --n 3000 --rounds 1" in result["command"]
    assert {r["mode"]: r["trained_count"] for r in result["rounds"]} == {"rows copied": 2950, "rows linked": 2950}
    assert "copying or linking the rows" in (tmp_path / "fold-rows-stall-3000.md").read_text()
