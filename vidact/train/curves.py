"""``RUN/curves.png``: training loss and LR per iteration, validation top-1 per epoch, and the gradient
noise scale B_simple where the run measured it."""

from __future__ import annotations

from pathlib import Path

from vidact.io.atomic import atomic_path
from vidact.train.metrics_log import read_metrics


def plot_curves(run_dir: str | Path, out: str | Path | None = None) -> Path | None:
    """Draw the curves from ``RUN/metrics.jsonl``; returns the PNG path, or None without data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run_dir)
    train = [r for r in records if r.get("kind") == "train" and r.get("loss") is not None]
    val = [r for r in records if r.get("kind") == "val" and r.get("top1") is not None]
    noise = [r for r in records if r.get("kind") == "noise" and r.get("b_simple") is not None]
    if not train and not val:
        return None
    out = Path(out) if out else Path(run_dir) / "curves.png"
    fig, axes = plt.subplots(1, 4 if noise else 3, figsize=(17 if noise else 13, 3.6))
    axes[0].plot([r["epoch_f"] for r in train], [r["loss"] for r in train], lw=1)
    axes[0].set(title="training loss", xlabel="epoch")
    axes[1].plot([r["epoch_f"] for r in train], [r["lr"] for r in train], lw=1, color="tab:orange")
    axes[1].set(title="learning rate", xlabel="epoch")
    axes[2].plot([r["epoch"] + 1 for r in val], [100 * r["top1"] for r in val], marker="o", color="tab:green")
    axes[2].set(title="validation top-1 (%)", xlabel="epoch", ylim=(0, 100))
    if noise:
        axes[3].plot([r["epoch_f"] for r in noise], [r["b_simple"] for r in noise], marker=".", color="tab:purple")
        axes[3].set(title="gradient noise scale B_simple (clips)", xlabel="epoch", yscale="log")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return out
