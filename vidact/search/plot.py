"""``trajectory.png``: validation top-1 against GFLOPs for every candidate, the chosen path highlighted.

The search's version of Figure 2 of the X3D paper: each step's candidates are labelled with their
axis; the chosen models are joined in order; a backward contraction is drawn as a star.
"""

from __future__ import annotations

from pathlib import Path

from vidact.io.atomic import atomic_path

AXIS_COLORS = {
    "t": "tab:blue",
    "tau": "tab:cyan",
    "s": "tab:green",
    "w": "tab:red",
    "b": "tab:purple",
    "d": "tab:brown",
    "base": "black",
}


def plot_trajectory(records: list[dict], out: str | Path) -> Path | None:
    """Draw ``records`` (trajectory.jsonl entries) to ``out``; returns the path, or None without records."""
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for rec in records:
        color = AXIS_COLORS.get(rec["axis"], "grey")
        x, y = rec["gflops"], 100 * rec["top1"]
        ax.scatter([x], [y], s=28, color=color, alpha=0.45 if not rec.get("chosen") else 1.0, zorder=2)
        label = "X2D" if rec["kind"] == "base" else f"{rec['axis']}{rec['step']}"
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7, color=color)
    path = sorted((r for r in records if r.get("chosen")), key=lambda r: r["step"])
    grown = [r for r in path if r["kind"] != "contract"]
    if grown:
        ax.plot(
            [r["gflops"] for r in grown],
            [100 * r["top1"] for r in grown],
            color="black",
            lw=1.6,
            marker="o",
            ms=5,
            zorder=3,
            label="chosen path",
        )
    contracted = [r for r in path if r["kind"] == "contract"]
    if grown and contracted:
        leg = [grown[-1], contracted[0]]
        ax.plot([r["gflops"] for r in leg], [100 * r["top1"] for r in leg], color="black", lw=1.2, ls="--", zorder=3)
        ax.scatter(
            [contracted[0]["gflops"]],
            [100 * contracted[0]["top1"]],
            marker="*",
            s=180,
            color="gold",
            edgecolor="black",
            zorder=4,
            label="contracted",
        )
    for axis, color in AXIS_COLORS.items():
        if axis != "base" and any(r["axis"] == axis for r in records):
            ax.scatter([], [], color=color, s=28, label=f"expand {axis}")
    ax.set_xscale("log")
    ax.set(xlabel="model capacity (GFLOPs, one clip)", ylabel="validation top-1 (%)", title="X3D progressive expansion")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out
