"""The benchmark builder on a tiny generated DreamBooth folder and distractor folder (no /work/shared)."""

import hashlib
import json
import multiprocessing
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from bench.make_crossdomain import main, worker_pool
from bench.renderings import QUERY_TYPES

SUBJECTS = ["alpha_toy", "beta_mug", "gamma_dog"]


def _random_picture(rng: np.random.Generator, size: int) -> Image.Image:
    # A gradient with a few coloured shapes: enough structure to pass the blank filter.
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    base = np.stack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (size, 1)), np.full((size, size), 128.0)], -1)
    img = Image.fromarray((base * rng.uniform(0.3, 1.0, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x, y = rng.integers(0, size - 16, 2)
        draw.ellipse((int(x), int(y), int(x) + 16, int(y) + 16), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return img


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    for subject in SUBJECTS:
        for i in range(3):
            path = root / "dreambooth" / subject / f"{i:02d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            _random_picture(rng, 96).save(path, quality=90)
    for i in range(10):
        path = root / "clutter" / f"d{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        _random_picture(rng, 80).save(path)
    Image.new("RGB", (80, 80), "white").save(root / "clutter" / "blank.png")  # must be filtered out
    return root / "dreambooth", root / "clutter"


def _build(inputs, out: Path, seed: int = 7, workers: int = 1) -> Path:
    dreambooth, clutter = inputs
    argv = ["--dreambooth", str(dreambooth), "--distractor-dirs", str(clutter), "--out", str(out),
            "--seed", str(seed), "--query-side", "64", "--distractor-side", "48", "--workers", str(workers)]
    assert main(argv) == 0
    return out


def _hashes(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*.jpg"))}


@pytest.fixture(scope="module")
def built(inputs, tmp_path_factory) -> Path:
    return _build(inputs, tmp_path_factory.mktemp("bench") / "out")


def test_layout(built):
    for subject in SUBJECTS:
        assert [p.name for p in (built / subject / "exemplars").iterdir()] == ["00.jpg"]
    assert len(list((built / "distractors").rglob("*.jpg"))) == 10  # the blank one is dropped
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["seed"] == 7 and manifest["subjects"] == 3
    assert manifest["distractors"]["sources"]["clutter"]["blank"] == 1
    n_queries = len(SUBJECTS) * 2 * len(QUERY_TYPES)  # two non-exemplar photos per subject
    counts = manifest["queries"]
    assert counts["evaluation"]["total"] + counts["traffic"]["total"] == n_queries


def test_every_query_type_appears_in_both_halves(built):
    labels = json.loads((built / "traffic_labels.json").read_text())
    evaluation_types = {p.parent.name for s in SUBJECTS for p in (built / s / "queries").rglob("*.jpg")}
    assert evaluation_types == set(QUERY_TYPES)
    assert {v["type"] for v in labels.values()} == set(QUERY_TYPES)


def test_traffic_and_evaluation_are_disjoint(built):
    labels = json.loads((built / "traffic_labels.json").read_text())
    traffic = sorted(p.name for p in (built / "traffic").iterdir())
    assert traffic == sorted(labels)
    assert not any(s in name for s in SUBJECTS for name in traffic)  # names reveal nothing
    traffic_sources = {(v["subject"], v["source"]) for v in labels.values()}
    evaluation_sources = {(s, p.stem + ".jpg") for s in SUBJECTS for p in (built / s / "queries").rglob("*.jpg")}
    assert traffic_sources and evaluation_sources and not traffic_sources & evaluation_sources


_SET_AFTER_IMPORT = "as imported"


def _seen_by_worker() -> str:
    return _SET_AFTER_IMPORT


def test_workers_are_never_forked_from_this_process(monkeypatch):
    # A forked child of the multi-threaded test process once hung for ever on a lock it copied mid-use.
    with worker_pool(1) as pool:
        assert pool.map(abs, [-1, 2]) == [1, 2] and multiprocessing.active_children() == []
    monkeypatch.setattr(sys.modules[__name__], "_SET_AFTER_IMPORT", "changed in this process")
    with worker_pool(2) as pool:
        # a forked child would hold a copy of this process's memory; a spawned one imports this module afresh
        assert pool.apply(_seen_by_worker) == "as imported"


def test_two_spawned_workers_write_the_same_files_as_one(built, inputs, tmp_path):
    assert _hashes(_build(inputs, tmp_path / "two", workers=2)) == _hashes(built)


def test_same_seed_gives_identical_files(built, inputs, tmp_path):
    again = _build(inputs, tmp_path / "again")
    assert _hashes(again) == _hashes(built)
    other = _build(inputs, tmp_path / "other", seed=8)
    assert _hashes(other) != _hashes(built)
