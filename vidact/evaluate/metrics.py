"""Classification metrics on score arrays: top-k, confusion matrix, per-class and mean class accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vidact.io.atomic import atomic_path


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the ``k`` highest scores (k capped at the class count)."""
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    # A stable order so ties go to the lower class index, matching argmax.
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``(K, K)`` counts; row = true class, column = predicted class."""
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(conf, (np.asarray(labels, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return conf


def per_class_accuracy(conf: np.ndarray) -> np.ndarray:
    """Recall of each class (NaN for a class with no samples)."""
    support = conf.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(conf) / np.maximum(support, 1), np.nan)


def mean_class_accuracy(conf: np.ndarray) -> float:
    """Mean of the per-class accuracies over classes that have samples."""
    acc = per_class_accuracy(conf)
    return float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan")


def per_class_table(conf: np.ndarray, classes: list[str]) -> list[dict]:
    """One row per class: name, support, correct, accuracy."""
    acc = per_class_accuracy(conf)
    return [
        {
            "class": name,
            "support": int(conf[i].sum()),
            "correct": int(conf[i, i]),
            "accuracy": None if np.isnan(acc[i]) else float(acc[i]),
        }
        for i, name in enumerate(classes)
    ]


def plot_confusion(conf: np.ndarray, classes: list[str], out: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix as a PNG (counts printed when the matrix is small)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(classes)
    norm = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
    side = min(max(4.0, 0.45 * k + 2.0), 30.0)
    fig, ax = plt.subplots(figsize=(side, side))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if k <= 40:
        ax.set_xticks(range(k), classes, rotation=90, fontsize=8)
        ax.set_yticks(range(k), classes, fontsize=8)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if conf[i, j]:
                    ax.text(
                        j,
                        i,
                        str(conf[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return out
