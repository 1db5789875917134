"""One HTML page per training or evaluation run (`report.html` beside its other outputs): what ran, the loss
curves, Recall@K, the calibration of the shares (reliability diagram) and a grid of example queries with
their top-5 works.

Self-contained: the figures (the run's PNGs) and the thumbnails are embedded as base64 `data:` URIs and
the style is inline, so the one file can be mailed, archived, or stored with a published pair and shown by
the console (no CDN, no script, nothing fetched). Rendered with Jinja2 (autoescaping on: labels and paths
come from folder names)."""
import base64
import io
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from PIL import Image

from training.examples import TOP
from training.metrics import RECALL_KS

REPORT_NAME = "report.html"
METRICS = ["ap", *[f"recall@{k}" for k in RECALL_KS]]
COLUMNS = ["AP", *[f"R@{k}" for k in RECALL_KS]]
THUMB = 128

_env = Environment(loader=FileSystemLoader(Path(__file__).with_name("templates")),
                   autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


def png_uri(path: str | Path | None) -> str | None:
    if not path or not Path(path).is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


@lru_cache(maxsize=512)
def thumbnail_uri(path: str | None, size: int = THUMB) -> str | None:
    """A small JPEG of an image file, as a data URI; None when it cannot be read (the grid says so)."""
    if not path:
        return None
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((size, size))
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=80)
    except (OSError, ValueError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _losses(history: list[dict] | None, png: str | Path | None) -> dict | None:
    if not history or not png_uri(png):
        return None
    names = sorted({k for row in history for k in row if k.endswith("loss")})
    return {"png": png_uri(png), "names": names, "steps": history[-1].get("step", len(history)),
            "last": {name: history[-1][name] for name in names if name in history[-1]}}


def _evaluation(report: dict | None, files: dict) -> dict | None:
    if not report:
        return None
    rows = [{"label": label, "protocol": protocol, "type": qtype, "n": result["n_queries"].get(qtype, 0),
             "cells": [metrics.get(m, float("nan")) for m in METRICS]}
            for label, result in report["encoders"].items() for protocol in ("abc", "service")
            for qtype, metrics in result[protocol].items()]
    pngs = [{"protocol": p, "png": png_uri(files.get(f"{p}_png"))} for p in ("abc", "service")]
    return {"dataset": report["dataset"], "n_concepts": report["n_concepts"],
            "n_distractors": report["n_distractors"], "rows": rows, "recall_pngs": [f for f in pngs if f["png"]]}


def _calibration(report: dict | None, files: dict) -> dict | None:
    if not report or not png_uri(files.get("reliability_png")):
        return None
    rows = [{"label": label, "type": qtype, "m": metrics}
            for label, result in report["encoders"].items() if "calibration" in result
            for qtype, metrics in result["calibration"]["by_type"].items()]
    return {"rows": rows, "png": png_uri(files["reliability_png"])}


def _examples(report: dict | None) -> list[dict]:
    blocks = []
    for label, result in (report or {}).get("encoders", {}).items():
        rows = [{**row, "thumb": thumbnail_uri(row["query"]),
                 "top": [{**hit, "thumb": thumbnail_uri(hit["image"])} for hit in row["top"]]}
                for row in result.get("examples", [])]
        if rows:
            blocks.append({"label": label, "rows": rows})
    return blocks


def write_html_report(path: str | Path, *, title: str, command: str, facts: dict | None = None,
                      history: list[dict] | None = None, loss_png: str | Path | None = None,
                      evaluation: dict | None = None, figures: dict | None = None) -> Path:
    """`evaluation`: training.evaluate's report (with per-encoder `examples`); `figures`: its PNG paths
    (`abc_png`, `service_png`, `reliability_png`, as training.report.write_report names them)."""
    figures = {k: v for k, v in (figures or {}).items() if v}
    encoder_ids = {label: r["encoder_id"] for label, r in (evaluation or {}).get("encoders", {}).items()}
    page = _env.get_template("report.html").render(
        title=title, command=command, written=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        run={"facts": {k: v for k, v in (facts or {}).items() if v not in (None, "")}, "encoder_ids": encoder_ids},
        losses=_losses(history, loss_png), evaluation=_evaluation(evaluation, figures),
        calibration=_calibration(evaluation, figures), examples=_examples(evaluation), columns=COLUMNS, top=TOP)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def training_facts(config: dict, checkpoint: dict) -> dict:
    """What a reader needs to know of a training run (the full config is in the checkpoint)."""
    keys = ("run_name", "backbone", "trainable", "trainable_blocks", "image_size", "batch_size", "epochs", "lr",
            "infomax_lambda", "tau", "device", "embed_from")
    seconds = checkpoint.get("train_seconds")
    return {**{k: config.get(k) for k in keys}, "base encoder": checkpoint.get("base_encoder_id"),
            "steps": checkpoint.get("step"), "training time": f"{seconds:.0f} s" if seconds else None}
