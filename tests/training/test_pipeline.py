"""A real (tiny) CPU run of the whole training flow: train -> resume -> export -> load -> evaluate -> calibrate."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter, ImageOps

from core.encoder import load_encoder
from tests.training.report_checks import assert_evaluation_sections, read_report
from training.__main__ import main as cli
from training.checkpoint import load_checkpoint

DREAMBOOTH = Path(__file__).resolve().parents[2] / "demo" / "data" / "dreambooth"
SUBJECTS = ["backpack", "can", "cat", "bear_plushie"]


def small(path: Path, size: int = 96) -> Image.Image:
    image = Image.open(path).convert("RGB")
    image.thumbnail((size, size))
    return image


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """Works (one folder each), and a folder-format eval set with photo and edge-sketch queries."""
    root = tmp_path_factory.mktemp("data")
    for subject in SUBJECTS:
        photos = sorted((DREAMBOOTH / subject).glob("*.jpg"))[:3]
        for i, photo in enumerate(photos):
            image = small(photo)
            image.save(_mk(root / "works" / subject / f"{i}.jpg"))
            if i == 0:
                image.save(_mk(root / "evalset" / subject / "exemplars" / "0.jpg"))
            else:
                image.save(_mk(root / "evalset" / subject / "queries" / f"{i}.jpg"))  # type "default"
                sketch = ImageOps.invert(image.convert("L").filter(ImageFilter.FIND_EDGES)).convert("RGB")
                sketch.save(_mk(root / "evalset" / subject / "queries" / "sketch" / f"{i}.jpg"))
    for i, photo in enumerate(sorted((DREAMBOOTH / "dog").glob("*.jpg"))[:3]):
        small(photo).save(_mk(root / "evalset" / "distractors" / f"{i}.jpg"))
    return {"root": root, "works": root / "works", "evalset": root / "evalset"}


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def smoke_args(data, out_dir: Path, *extra: str) -> list[str]:
    return ["train", "--preset", "smoke", f"source_dirs=[\"{data['works']}\"]",
            f"synthetic_dirs=[\"{data['evalset']}\"]", f"out_dir={out_dir}", "num_threads=2", *extra]


def test_train_export_evaluate_calibrate(data, tmp_path):
    torch.set_num_threads(2)
    checkpoint = cli(smoke_args(data, tmp_path / "run"))
    state = load_checkpoint(checkpoint)
    assert state["step"] == 3 and state["config"]["image_size"] == 64
    assert state["base_encoder_id"].startswith("efficientnet-lite0-imagenet@")
    assert (tmp_path / "run" / "loss_curve.png").stat().st_size > 0
    page = read_report((tmp_path / "run" / "report.html").read_text())  # a training run's own page
    assert len(page.images["losses"]) == 1 and page.images["losses"][0].startswith("data:image/png;base64,")
    assert "No evaluation in this run" in page.text["recall"] and "efficientnet-lite0" in page.text["summary"]

    artefact = cli(["export", str(checkpoint), str(tmp_path / "encoders" / "smoke")])
    meta = json.loads((artefact / "encoder.json").read_text())
    assert meta["format"] == "attrib-encoder/1" and meta["encoder_id"].startswith("attrib-lite0-smoke-projector@")
    assert meta["model"]["projector_dims"] == [1280, 256, 64] and meta["dim"] == 64
    encoder = load_encoder(str(artefact))
    vectors = encoder.embed([small(p) for p in sorted(data["works"].rglob("*.jpg"))[:3]])
    assert vectors.shape == (3, 64) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    report = cli(["evaluate", str(data["evalset"]), "--encoder", "builtin:efficientnet-lite0",
                  "--encoder", str(artefact), "--supervised-train", str(data["evalset"]), "--supervised-steps", "20",
                  "--out", str(tmp_path / "eval")])
    assert set(report["encoders"]) == {"builtin:efficientnet-lite0", "smoke", "supervised-linear"}
    zero_shot = report["encoders"]["builtin:efficientnet-lite0"]
    assert zero_shot["n_queries"] == {"all": 16, "default": 8, "sketch": 8}
    assert 0 <= zero_shot["service"]["sketch"]["recall@5"] <= zero_shot["abc"]["sketch"]["recall@5"] <= 100
    for name in ("report.json", "report.md", "recall_abc.png", "recall_service.png", "report.html"):
        assert (tmp_path / "eval" / name).stat().st_size > 0
    page = read_report((tmp_path / "eval" / "report.html").read_text())
    assert_evaluation_sections(page, encoders=3)
    assert "trained nothing" in page.text["losses"]
    first = report["encoders"]["builtin:efficientnet-lite0"]["examples"][0]
    assert len(first["top"]) == 5 and [hit["work"] for hit in first["top"]].count(first["concept"]) <= 1

    calibration = cli(["calibrate", str(artefact), "--works-dir", str(data["works"])])
    assert calibration.fitted and calibration.inv_tau > 1.0
    assert load_encoder(str(artefact)).calibration == calibration


def test_resume_continues_from_the_saved_step(data, tmp_path):
    first = cli(smoke_args(data, tmp_path / "run", "max_steps=2"))
    assert load_checkpoint(first)["step"] == 2
    resumed = cli(["train", "--resume", str(first), "max_steps=4"])
    state = load_checkpoint(resumed)
    assert state["step"] == 4 and [row["step"] for row in state["history"]] == [1, 2, 3, 4]
    assert state["config"]["max_steps"] == 4


def test_dispatcher_rejects_unknown_commands():
    assert cli(["no-such-command"]) == 2
