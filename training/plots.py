"""PNG figures of a run: the loss curve, and Recall@K curves of an evaluation (matplotlib, Agg)."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: training runs on servers and in tests
import matplotlib.pyplot as plt  # noqa: E402


def plot_losses(history: list[dict], path: str | Path) -> Path:
    """history: one dict per step with `step` and named `*_loss` terms."""
    fig, ax = plt.subplots(figsize=(6, 4))
    names = sorted({k for row in history for k in row if k.endswith("_loss")})
    for name in names:
        points = [(row["step"], row[name]) for row in history if name in row]
        ax.plot(*zip(*points), label=name, marker="o" if len(points) <= 20 else None) if points else None
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_recall_curves(panels: dict[str, dict[str, dict[int, float]]], title: str, path: str | Path) -> Path:
    """panels: query type -> encoder label -> {K: Recall@K in %}; one panel per query type."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 2, 3.6), sharey=True, squeeze=False)
    for ax, (panel, curves) in zip(axes[0], panels.items()):
        for label, by_k in curves.items():
            ks = sorted(by_k)
            ax.plot(ks, [by_k[k] for k in ks], marker="o", label=label)
        ax.set_xscale("log")
        ax.set_xlabel("K")
        ax.set_title(panel, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("Recall@K (%)")
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_reliability(panels: dict[str, dict[str, list[dict]]], title: str, path: str | Path) -> Path:
    """panels: query type -> label -> reliability bins ({share, accuracy, n}); the diagonal is perfect."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 2, 3.6), sharey=True, squeeze=False)
    for ax, (panel, curves) in zip(axes[0], panels.items()):
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        for label, bins in curves.items():
            ax.plot([b["share"] for b in bins], [b["accuracy"] for b in bins], marker="o", label=label)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("mean top share")
        ax.set_title(panel, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("top work right (fraction)")
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)
