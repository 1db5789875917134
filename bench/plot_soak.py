"""Memory of the API and the worker over a soak run, as a PNG beside its JSON report.

    python -m bench.plot_soak bench/results/soak-sqlite-10min.json   # -> ...soak-sqlite-10min.png"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)


def plot_memory(report: dict, path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, role in zip(axes, ("api", "worker")):
        series = report["memory"][role]["series"]
        ax.plot([t / 60 for t, _ in series], [mb for _, mb in series])
        slope = report["memory"][role]["slope_mb_per_min_second_half"]
        ax.set(title=f"{role} RSS (second-half slope {slope:+.2f} MB/min)", xlabel="minutes", ylabel="MB")
        ax.grid(alpha=0.3)
    config = report["config"]
    fig.suptitle(f"soak: {config.get('database')} · {config.get('clients')} clients · errors {report['errors']} · "
                 f"lost jobs {report['jobs']['lost']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str]) -> int:
    for name in argv:
        source = Path(name)
        print(plot_memory(json.loads(source.read_text()), source.with_suffix(".png")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
