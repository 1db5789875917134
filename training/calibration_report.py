"""Calibration tables (markdown) and reliability diagrams (PNG) for evaluation and bench reports.

Input: label -> {"calibration": {...}, "by_type": {query type -> calibration_summary}}."""
import json
from pathlib import Path

from training.plots import plot_reliability

HEADER = ["| calibration | query type | queries | top-1 | mean top share | ECE [95% CI] | Brier (top) | Brier "
          "| unattributed > true |", "|---|---|---|---|---|---|---|---|---|"]


def calibration_rows(label: str, by_type: dict) -> list[str]:
    return [f"| {label} | {qtype} | {m['n']} | {m['top1']:.1f} | {m['mean_top_share']:.1f} | "
            f"{m['ece']:.1f} [{m['ece_low']:.1f}, {m['ece_high']:.1f}] | {m['brier_top']:.3f} | {m['brier']:.3f} | "
            f"{m['unattributed_over_true']:.1f} |" for qtype, m in by_type.items()]


def calibration_table(rows: dict) -> str:
    lines = list(HEADER)
    for label, row in rows.items():
        lines += calibration_rows(label, row["by_type"])
    return "\n".join(lines)


def reliability_png(rows: dict, title: str, path: str | Path) -> Path:
    panels: dict[str, dict] = {}
    for label, row in rows.items():
        for qtype, metrics in row["by_type"].items():
            panels.setdefault(qtype, {})[label] = metrics["reliability"]
    return plot_reliability(panels, title, path)


def bench_markdown(report: dict) -> str:
    scalars = [f"- {label}: inv_tau {r['calibration']['inv_tau']:.2f}, b {r['calibration']['bias']:.2f}; "
               f"fitted on: {r['calibration']['fitted_on']}" for label, r in report["rows"].items()]
    return "\n".join([
        f"# Calibration of the top share: {report['dataset']}", "",
        f"Encoder `{report['encoder_id']}`, service protocol ({report['n_works']} registered works, "
        f"top_k {report['top_k']}, {report['hits']} image hits per query). Percentages, except the Brier scores. "
        "ECE over 10 equal-mass bins, bootstrap 95% interval over queries. Ranking identical in every row: "
        f"{report['ranking_identical']}; service mAP {report['service_map']:.1f} (independent of calibration).", "",
        calibration_table(report["rows"]), "", "Calibrations:", *scalars, "",
        f"Command: `{report['command']}`; {report['seconds']} s on {report['machine']['cpu']} "
        f"({report['machine']['cores']} cores); {report['note']}.", ""])


def write_calibration_report(report: dict, out_dir: str | Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md"}
    paths["json"].write_text(json.dumps(report, indent=2))
    paths["markdown"].write_text(bench_markdown(report))
    paths["png"] = reliability_png(report["rows"], f"{report['dataset']}: reliability of the top share",
                                   out_dir / "reliability.png")
    return paths
