"""Evaluation report writers: JSON (everything), markdown tables, Recall@K and reliability plots (PNG), and
the run's self-contained HTML page (training.html_report)."""
import json
from pathlib import Path

from training.calibration_report import calibration_table, reliability_png
from training.html_report import REPORT_NAME, write_html_report
from training.metrics import RECALL_KS
from training.plots import plot_recall_curves

COLUMNS = ["ap", *[f"recall@{k}" for k in RECALL_KS]]


def markdown_table(report: dict) -> str:
    lines = [f"# Attribution evaluation: {report['dataset']}", "",
             f"{report['n_concepts']} concepts, {report['n_distractors']} distractors. "
             "AbC protocol: pool = distractors + the query's own exemplars. "
             "Service protocol: pool = every concept's exemplars + distractors. Percentages.", "",
             "| encoder | protocol | query type | queries | AP | R@1 | R@5 | R@10 | R@100 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, result in report["encoders"].items():
        for protocol in ("abc", "service"):
            for qtype, metrics in result[protocol].items():
                values = " | ".join(f"{metrics[c]:.1f}" for c in COLUMNS)
                lines.append(f"| {label} | {protocol} | {qtype} | {result['n_queries'][qtype]} | {values} |")
    ids = [f"- {label}: `{r['encoder_id']}`" for label, r in report["encoders"].items()]
    calibrated = _calibration_rows(report)
    if calibrated:
        lines += ["", "Calibration of the top share (service protocol, each encoder's own calibration; ECE over "
                  "10 equal-mass bins with a bootstrap 95% interval, in points):", "", calibration_table(calibrated)]
    return "\n".join(lines + ["", "Encoders:", *ids, ""])


def _calibration_rows(report: dict) -> dict:
    return {label: r["calibration"] for label, r in report["encoders"].items() if "calibration" in r}


def write_report(report: dict, out_dir: str | Path, command: str = "evaluate") -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md"}
    paths["json"].write_text(json.dumps(report, indent=2))
    paths["markdown"].write_text(markdown_table(report))
    for protocol in ("abc", "service"):
        panels: dict[str, dict] = {}
        for label, result in report["encoders"].items():
            for qtype, metrics in result[protocol].items():
                panels.setdefault(qtype, {})[label] = {k: metrics[f"recall@{k}"] for k in RECALL_KS}
        paths[f"{protocol}_png"] = plot_recall_curves(
            panels, f"{report['dataset']}: {protocol} protocol", out_dir / f"recall_{protocol}.png")
    if _calibration_rows(report):
        paths["reliability_png"] = reliability_png(_calibration_rows(report), f"{report['dataset']}: reliability",
                                                   out_dir / "reliability.png")
    paths["html"] = write_html_report(out_dir / REPORT_NAME, title=f"Evaluation: {report['dataset']}",
                                      command=f"python -m training {command}", evaluation=report, figures=paths,
                                      facts={"dataset": report["dataset"], "concepts": report["n_concepts"],
                                             "distractors": report["n_distractors"]})
    return paths
