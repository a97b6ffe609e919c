"""The demo's report: ``report.md`` (results table) and ``report.html`` (table + embedded PNG figures)."""

from __future__ import annotations

import base64
import html
import os
import platform
from pathlib import Path

import numpy as np

from vidact.io.atomic import atomic_path, atomic_write_text

FUSED = "two-stream (fused)"  # the row of the late fusion of single-frame RGB and temporal flow scores
COLUMNS = ("arch", "modality", "input", "params (M)", "GFLOPs", "train time (s)", "val top-1 (%)", "clips/s")


# --------------------------------------------------------------------------- the table
def result_rows(cfg, results: dict, fused: dict, profiles: dict) -> list[dict]:
    """One row per run, then the fused two-stream row (the demo's results table)."""

    rows = []
    for run in cfg.runs:
        res, prof = results[run.name], profiles[run.name]
        arch = run.arch + (f" ({run.multigrid} multigrid)" if run.multigrid != "none" else "")
        rows.append({"name": run.name, "arch": arch, "modality": run.modality, "input": prof["input"],
                     "params": prof["params"], "gflops": prof["gflops"], "train_seconds": res["train_seconds"],
                     "val_top1": res["video_top1"], "clips_per_s": prof["infer_clips_per_s"]})
    rgb, flow = profiles["single-frame"], profiles["two-stream-temporal"]
    rows.append({"name": FUSED, "arch": FUSED, "modality": "rgb+flow",
                 "input": f"{rgb['input']} + {flow['input']}", "params": rgb["params"] + flow["params"],
                 "gflops": rgb["gflops"] + flow["gflops"],
                 "train_seconds": results["single-frame"]["train_seconds"]
                 + results["two-stream-temporal"]["train_seconds"],
                 "val_top1": fused["video_top1"],
                 "clips_per_s": 1.0 / (1.0 / rgb["infer_clips_per_s"] + 1.0 / flow["infer_clips_per_s"])})
    return rows


def _cells(row: dict) -> list[str]:
    return [row["arch"], row["modality"], row["input"], f"{row['params'] / 1e6:.2f}", f"{row['gflops']:.3f}",
            f"{row['train_seconds']:.0f}", f"{100 * row['val_top1']:.1f}", f"{row['clips_per_s']:.0f}"]


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def html_table(rows: list[dict]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def machine_text() -> str:
    """E.g. ``Linux x86_64, 2 CPU cores, torch 2.x (CPU)``."""
    import torch

    device = f"CUDA {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "CPU"
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, "
            f"torch {torch.__version__} ({device})")


# --------------------------------------------------------------------------- figures
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    _pyplot().close(fig)
    return path


def plot_training_curves(results: dict, path: Path) -> Path:
    """Training loss and validation top-1 per epoch of every run, on one figure."""
    plt = _pyplot()
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, res in results.items():
        epochs = [h["epoch"] + 1 for h in res["history"]]
        loss_ax.plot(epochs, [h["train_loss"] for h in res["history"]], marker=".", label=name)
        acc = [(h["epoch"] + 1, 100 * h["val_top1"]) for h in res["history"] if h.get("val_top1") is not None]
        acc_ax.plot([a[0] for a in acc], [a[1] for a in acc], marker=".", label=name)
    loss_ax.set(title="training loss", xlabel="epoch")
    acc_ax.set(title="validation top-1 (%)", xlabel="epoch", ylim=(0, 100))
    acc_ax.legend(fontsize=8)
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def time_to_accuracy(history: list[dict]) -> tuple[list[float], list[float]]:
    """(cumulative training seconds, val top-1 %) after each validated epoch."""
    seconds, top1, elapsed = [], [], 0.0
    for h in history:
        elapsed += h["seconds"]
        if h.get("val_top1") is not None:
            seconds.append(elapsed)
            top1.append(100 * h["val_top1"])
    return seconds, top1


def plot_time_to_accuracy(plain: dict, multigrid: dict, path: Path) -> Path:
    """Validation top-1 against training wall-clock: plain schedule vs multigrid."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for label, res in (("plain", plain), ("multigrid long+short", multigrid)):
        x, y = time_to_accuracy(res["history"])
        ax.plot(x, y, marker="o", label=f"{label} ({res['train_seconds']:.0f} s)")
    ax.set(title="x3d-xs: time to accuracy", xlabel="training time (s)", ylabel="val top-1 (%)", ylim=(0, 100))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion_png(conf: list[list[int]], classes: list[str], title: str, path: Path) -> Path:
    from vidact.evaluate.metrics import plot_confusion

    return plot_confusion(np.asarray(conf), classes, path, title=title)


def flow_strip(flow_dir: Path, path: Path, pairs: int = 8) -> Path:
    """Colour-wheel strip (hue = direction, saturation = magnitude) of one clip's first flows."""
    from vidact.flow.visualize import load_flows_for_show, write_flow_image

    flows = load_flows_for_show(flow_dir, pairs)
    return write_flow_image(path, flows, columns=len(flows))


def embed_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


# --------------------------------------------------------------------------- the report
HTML_STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
              "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
              "td:first-child,th:first-child{text-align:left}img{max-width:100%}")


def write_report(out: Path, cfg, stages: dict, results: dict, fused: dict, profiles: dict,
                 stage_seconds: dict, session_seconds: float) -> dict:
    """Write ``report.md``, ``report.html`` and ``figures/*.png``; returns the summary."""

    out = Path(out)
    figures = out / "figures"
    rows = result_rows(cfg, results, fused, profiles)
    total = sum(stage_seconds.values())
    chance = 1.0 / cfg.classes
    best = max(rows, key=lambda r: r["val_top1"])
    conf_src = fused if best["name"] == FUSED else results[best["name"]]
    clip = sorted((out / "flow").rglob("flow.json"))
    figs = {
        "training curves of every run": plot_training_curves(results, figures / "curves.png"),
        "x3d-xs, plain vs multigrid: time to accuracy": plot_time_to_accuracy(
            results["x3d-xs"], results["x3d-xs-multigrid"], figures / "time_to_accuracy.png"),
        f"confusion matrix ({best['arch']}, val)": plot_confusion_png(
            conf_src["confusion"], conf_src["classes"], f"{best['arch']}: val top-1 {100 * best['val_top1']:.1f}%",
            figures / "confusion.png"),
    }
    if clip:
        name = clip[0].parent.name
        figs[f"TV-L1 flow of {name} (colour wheel: hue = direction)"] = flow_strip(clip[0].parent,
                                                                                   figures / "flow_strip.png")
    plain, mg = results["x3d-xs"], results["x3d-xs-multigrid"]
    saving = 1.0 - mg["train_seconds"] / plain["train_seconds"] if plain["train_seconds"] else 0.0
    flow = stages["flow"]
    facts = [
        f"Machine: {machine_text()}; torch threads per training run: {cfg.threads}.",
        f"Data: synthetic motion set, {cfg.classes} classes x {cfg.per_class} clips "
        f"({stages['synth']['train']} train / {stages['synth']['val']} val), {cfg.clip_frames} frames of "
        f"{cfg.clip_size}x{cfg.clip_size}; chance = {100 * chance:.1f}%.",
        f"Flow: TV-L1, {flow['backend']} backend, nscales {flow['params']['nscales']}, warps "
        f"{flow['params']['warps']}, {flow['params']['outer_iterations']} outer x "
        f"{flow['params']['inner_iterations']} inner iterations (all in each clip's flow.json).",
        f"Fusion: late fusion of saved softmax scores, single-frame RGB x {cfg.fusion_weights[0]:g} + "
        f"temporal flow x {cfg.fusion_weights[1]:g}.",
        f"Multigrid: x3d-xs long+short trained in {mg['train_seconds']:.0f} s vs {plain['train_seconds']:.0f} s "
        f"plain ({100 * saving:.0f}% less wall-clock), val top-1 {100 * mg['video_top1']:.1f}% vs "
        f"{100 * plain['video_top1']:.1f}%.",
        f"Wall-clock of all stages: {total / 60:.1f} min ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in stage_seconds.items()) + ").",
        "GFLOPs: multiply-adds of one clip at the input shown (fvcore convention); clips/s: inference at "
        f"batch 8 on the CPU with {cfg.threads} thread(s); val top-1: video accuracy on the val split.",
    ]
    md = ["# vidact demo report", "", markdown_table(rows)]
    md += [f"- {f}" for f in facts]
    md += ["", "Figures (in report.html, and as PNG files):", ""]
    md += [f"- {title}: `figures/{p.name}`" for title, p in figs.items()]
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    body = [f"<h1>vidact demo report</h1>", html_table(rows), "<ul>"]
    body += [f"<li>{html.escape(f)}</li>" for f in facts] + ["</ul>"]
    for title, p in figs.items():
        body.append(f"<h2>{html.escape(title)}</h2><img alt=\"{html.escape(title)}\" src=\"{embed_png(p)}\">")
    page = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>vidact demo report</title>"
            f"<style>{HTML_STYLE}</style></head><body>{''.join(body)}</body></html>\n")
    atomic_write_text(out / "report.html", page)
    return {"out": str(out), "report_md": str(out / "report.md"), "report_html": str(out / "report.html"),
            "rows": rows, "chance": chance, "wall_seconds": total, "session_seconds": session_seconds,
            "stage_seconds": stage_seconds, "multigrid_saving": saving, "machine": machine_text()}
