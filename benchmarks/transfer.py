"""Transfer on the synthetic set: does a c3d-bn trained on 4 motion classes help on 4 others?

The built-in synthetic set (8 classes) is split in two: A = move_left/right/up/down (translations),
B = rotate_cw/ccw, zoom_in/out. One c3d-bn (the demo's: width 1/8, 8 frames of 48x48, AdamW 1e-3)
trains on A; then three runs on B for the same number of epochs, all through ``vidact train``'s engine:

- scratch: random init;
- fine-tune: ``--pretrained A/best.pt`` (every tensor but the classifier), everything trains;
- frozen: the same start with ``--freeze backbone`` (only the classifier trains; BN stays A's).

Prints a Markdown table of B's val top-1 after each epoch for the three runs (and each run's
training seconds and its best top-1 relative to scratch), and writes ``transfer.json``.

    .venv/bin/python benchmarks/transfer.py [--pre-epochs 16] [--epochs 10] [--per-class 48] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

GROUP_A = ("move_left", "move_right", "move_up", "move_down")
GROUP_B = ("rotate_cw", "rotate_ccw", "zoom_in", "zoom_out")


def split_dataset(src: Path, dst: Path, classes: tuple[str, ...]) -> Path:
    """A data set folder holding only ``classes`` of ``src`` (labels renumbered, videos left in place)."""
    dst.mkdir(parents=True, exist_ok=True)
    names = src.joinpath("classes.txt").read_text().split()
    keep = {names.index(c): i for i, c in enumerate(classes)}
    for split in ("train", "val"):
        with open(src / f"{split}.csv", newline="") as f, open(dst / f"{split}.csv", "w", newline="") as g:
            rows = list(csv.DictReader(f))
            w = csv.writer(g)
            w.writerow(["path", "label"])
            for r in rows:
                if int(r["label"]) in keep:
                    w.writerow([str((src / r["path"]).resolve()), keep[int(r["label"])]])
    dst.joinpath("classes.txt").write_text("\n".join(classes) + "\n")
    if (src / "dataset.json").is_file():
        shutil.copy(src / "dataset.json", dst / "dataset.json")
    return dst


def run(data: Path, out: Path, epochs: int, *, pretrained: str = "", freeze: str = "", seed: int = 0) -> dict:
    from vidact.train.config import TrainConfig
    from vidact.train.engine import train

    cfg = TrainConfig(
        arch="c3d-bn",
        data=str(data),
        out=str(out),
        frames=8,
        size=48,
        stride=1,
        width_mult=0.125,
        epochs=epochs,
        batch_size=8,
        optimizer="adamw",
        lr=1e-3,
        weight_decay=1e-4,
        dropout=0.3,
        threads=1,
        device="cpu",
        seed=seed,
        log_every=1000,
        pretrained=pretrained,
        freeze=freeze,
    ).validate()
    start = time.perf_counter()
    summary = train(cfg, progress=False)
    return {
        "curve": [h.get("val_top1") for h in summary["history"]],
        "seconds": time.perf_counter() - start,
        "best": summary["best_val_top1"],
        "best_path": summary["best"],
        "freeze": summary.get("freeze"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pre-epochs", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--per-class", type=int, default=48)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from vidact.data.synthetic import SynthConfig, generate

    out = args.out or Path(tempfile.mkdtemp(prefix="vidact-transfer-"))
    synth = out / "synth"
    generate(synth, SynthConfig(classes=8, per_class=args.per_class, seed=0))
    data_a = split_dataset(synth, out / "A", GROUP_A)
    data_b = split_dataset(synth, out / "B", GROUP_B)

    pre = run(data_a, out / "runs" / "A", args.pre_epochs)
    results = {"pretrain_A": pre}
    results["scratch"] = run(data_b, out / "runs" / "B-scratch", args.epochs)
    results["fine-tune"] = run(data_b, out / "runs" / "B-finetune", args.epochs, pretrained=pre["best_path"])
    results["frozen"] = run(
        data_b, out / "runs" / "B-frozen", args.epochs, pretrained=pre["best_path"], freeze="backbone"
    )
    (out / "transfer.json").write_text(json.dumps(results, indent=2))

    n_train = sum(1 for _ in open(data_b / "train.csv")) - 1
    n_val = sum(1 for _ in open(data_b / "val.csv")) - 1
    print(
        f"c3d-bn (width 1/8, 8x48x48, AdamW 1e-3, batch 8), 1 thread; A = {', '.join(GROUP_A)}: "
        f"{args.pre_epochs} epochs, best val top-1 {100 * pre['best']:.1f}% in {pre['seconds']:.0f} s"
    )
    print(
        f"B = {', '.join(GROUP_B)}: {n_train} train / {n_val} val clips, chance 25%; val top-1 (%) after each epoch\n"
    )
    names = ("scratch", "fine-tune", "frozen")
    print("| epoch | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for e in range(args.epochs):
        print(f"| {e + 1} | " + " | ".join(f"{100 * results[n]['curve'][e]:.1f}" for n in names) + " |")
    print("| train s | " + " | ".join(f"{results[n]['seconds']:.0f}" for n in names) + " |")
    ref = results["scratch"]["best"]
    print(
        "| best | "
        + " | ".join(f"{100 * results[n]['best']:.1f} ({results[n]['best'] / ref:.2f}x)" for n in names)
        + " |"
    )
    first = {n: next((e + 1 for e, v in enumerate(results[n]["curve"]) if v >= 0.9), None) for n in names}
    print("| first epoch >= 90% | " + " | ".join(str(first[n] or "-") for n in names) + " |")
    print(f"\nresults: {out / 'transfer.json'}")


if __name__ == "__main__":
    main()
