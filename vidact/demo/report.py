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
REACH_TOLERANCE = 1.0  # points: "reached the plain run's top-1" means within this of its final val top-1
FLOW_SATURATION_PERCENTILE = 90  # the flow strip's colour scale: this percentile of motion is fully saturated
COLUMNS = ("arch", "modality", "input", "params (M)", "GFLOPs", "train time (s)", "val top-1 (%)", "clips/s")


# --------------------------------------------------------------------------- the table
def result_rows(cfg, results: dict, fused: dict, profiles: dict) -> list[dict]:
    """One row per run, then the fused two-stream row (the demo's results table)."""

    rows = []
    for run in cfg.runs:
        res, prof = results[run.name], profiles[run.name]
        tags = (["large set"] if run.dataset != "main" else []) + (
            [multigrid_label(run, res)] if run.multigrid != "none" else (["plain"] if run.dataset != "main" else [])
        )
        arch = run.arch + (f" ({', '.join(tags)})" if tags else "")
        rows.append(
            {
                "name": run.name,
                "arch": arch,
                "modality": run.modality,
                "input": prof["input"],
                "params": prof["params"],
                "gflops": prof["gflops"],
                "train_seconds": res["train_seconds"],
                "val_top1": res["video_top1"],
                "clips_per_s": prof["infer_clips_per_s"],
            }
        )
    rgb, flow = profiles["single-frame"], profiles["two-stream-temporal"]
    rows.append(
        {
            "name": FUSED,
            "arch": FUSED,
            "modality": "rgb+flow",
            "input": f"{rgb['input']} + {flow['input']}",
            "params": rgb["params"] + flow["params"],
            "gflops": rgb["gflops"] + flow["gflops"],
            "train_seconds": results["single-frame"]["train_seconds"] + results["two-stream-temporal"]["train_seconds"],
            "val_top1": fused["video_top1"],
            "clips_per_s": 1.0 / (1.0 / rgb["infer_clips_per_s"] + 1.0 / flow["infer_clips_per_s"]),
        }
    )
    return rows


def multigrid_label(run, res: dict) -> str:
    """``long+short multigrid``, or for ``auto`` what it chose: ``auto multigrid: long+short, bounded batches``."""
    if run.multigrid != "auto":
        return f"{run.multigrid} multigrid"
    chosen = res.get("multigrid") or "?"
    rule = f", {res['multigrid_batch']} batches" if res.get("multigrid_batch") and chosen != "none" else ""
    return f"auto multigrid: {chosen}{rule}"


def _cells(row: dict) -> list[str]:
    return [
        row["arch"],
        row["modality"],
        row["input"],
        f"{row['params'] / 1e6:.2f}",
        f"{row['gflops']:.3f}",
        f"{row['train_seconds']:.0f}",
        f"{100 * row['val_top1']:.1f}",
        f"{row['clips_per_s']:.0f}",
    ]


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
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} ({device})"


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
    """(training seconds, val top-1 %) after each validated epoch.

    Seconds are the training time so far plus that epoch's precise-BN pass (multigrid recomputes
    BatchNorm statistics at the full shape before it validates); validation time is left out.
    """
    seconds, top1, elapsed = [], [], 0.0
    for h in history:
        elapsed += h["seconds"]
        if h.get("val_top1") is not None:
            seconds.append(elapsed + (h.get("precise_bn_seconds") or 0.0))
            top1.append(100 * h["val_top1"])
    return seconds, top1


def multigrid_pair(cfg, results: dict) -> tuple[str, str] | None:
    """Names of the plain and the multigrid run of the comparison (same arch and data set), if any."""
    for mg in cfg.runs:
        if mg.multigrid != "none":
            plain = next(
                (
                    r
                    for r in cfg.runs
                    if r.multigrid == "none"
                    and (r.arch, r.dataset, r.frames, r.size) == (mg.arch, mg.dataset, mg.frames, mg.size)
                ),
                None,
            )
            if plain is not None and plain.name in results and mg.name in results:
                return plain.name, mg.name
    return None


def compare_time_to_accuracy(plain: dict, multigrid: dict, tolerance: float = REACH_TOLERANCE) -> dict:
    """Plain vs multigrid: training seconds, final top-1 and when multigrid first came within
    ``tolerance`` points of the plain run's final val top-1 (``None``: it did not)."""
    px, py = time_to_accuracy(plain["history"])
    mx, my = time_to_accuracy(multigrid["history"])
    target = py[-1] - tolerance if py else 0.0
    reach = next((x for x, y in zip(mx, my) if y >= target - 1e-9), None)
    return {
        "plain_seconds": px[-1] if px else 0.0,
        "plain_top1": py[-1] if py else 0.0,
        "multigrid_seconds": mx[-1] if mx else 0.0,
        "multigrid_top1": my[-1] if my else 0.0,
        "target_top1": target,
        "multigrid_reach_seconds": reach,
        "reach_fraction": reach / px[-1] if reach is not None and px and px[-1] else None,
    }


def noise_facts(plain: dict, multigrid: dict) -> str:
    """The multigrid run's decision and the plain run's measured noise scale, as sentences (or "")."""
    out = ""
    for line in multigrid.get("decisions") or []:
        if line.startswith("multigrid auto:"):
            out += f" Its probe ({multigrid['probe']['seconds']:.1f} s): {line.removeprefix('multigrid auto: ')}."
    noise = plain.get("noise_scale") or {}
    if noise.get("b_simple"):
        cost = noise.get("overhead_fraction")
        out += (
            f" The plain run's gradient noise scale ended at B_simple ≈ {noise['b_simple']:.3g} clips "
            f"({noise['measurements']} measurements"
            + (f", {100 * cost:.1f}% of its training time" if cost is not None else "")
            + ")."
        )
    return out


def plot_noise_scale(plain: dict, multigrid: dict, path: Path, title: str) -> Path | None:
    """The plain run's gradient noise scale B_simple over its epochs, the multigrid probe's measurement, and
    the base batch; None when neither measured it."""
    points = [(n["epoch_f"], n["b_simple"]) for n in plain.get("noise", []) if n.get("b_simple")]
    probe = (multigrid.get("probe") or {}).get("noise") or {}
    if not points and not probe.get("b_simple"):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    if points:
        ax.plot(*zip(*points), marker=".", label="plain run, measured every 8 steps (smoothed)")
    if probe.get("b_simple"):
        ax.axhline(probe["b_simple"], color="tab:orange", ls="--", lw=1, label="the auto run's probe, before training")
    ax.axhline(plain["run"]["batch_size"], color="grey", ls=":", lw=1, label="the base batch")
    ax.set(title=title, xlabel="epoch", ylabel="B_simple (clips)", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_time_to_accuracy(
    plain: dict, multigrid: dict, path: Path, title: str, multigrid_name: str = "multigrid"
) -> Path:
    """Validation top-1 against training seconds, plain schedule and multigrid on the same axes."""
    plt = _pyplot()
    cmp = compare_time_to_accuracy(plain, multigrid)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, res in (("plain", plain), (multigrid_name, multigrid)):
        x, y = time_to_accuracy(res["history"])
        ax.plot(x, y, marker="o", label=f"{label} ({x[-1] if x else 0:.0f} s, {y[-1] if y else 0:.1f}%)")
    ax.axhline(cmp["target_top1"], color="grey", ls=":", lw=1, label=f"plain's final top-1 - {REACH_TOLERANCE:g} pt")
    if cmp["multigrid_reach_seconds"] is not None:
        ax.axvline(
            cmp["multigrid_reach_seconds"],
            color="tab:orange",
            ls="--",
            lw=1,
            label=f"multigrid reaches it: {cmp['multigrid_reach_seconds']:.0f} s "
            f"({cmp['reach_fraction']:.2f} of plain's time)",
        )
    ax.set(title=title, xlabel="training time (s)", ylabel="val top-1 (%)", ylim=(0, 100), xlim=(0, None))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion_png(conf: list[list[int]], classes: list[str], title: str, path: Path) -> Path:
    from vidact.evaluate.metrics import plot_confusion

    return plot_confusion(np.asarray(conf), classes, path, title=title)


def flow_strip(frames_dir: Path, flow_dir: Path, path: Path, pairs: int = 6) -> Path:
    """RGB frames (top) above their TV-L1 flow (bottom), large enough to read, plus the colour key.

    Colour wheel: hue = direction, saturation = magnitude; the scale puts the
    :data:`FLOW_SATURATION_PERCENTILE`-th percentile of the clip's motion at full saturation, so
    typical motion is vivid rather than pale next to a few large outliers.
    """
    import cv2

    from vidact.flow.visualize import flow_to_color, load_flows_for_show

    flows = load_flows_for_show(flow_dir, pairs)
    n = len(flows)
    magnitude = np.sqrt((flows.astype(np.float64) ** 2).sum(1))
    moving = magnitude[magnitude > 0.1]
    scale = float(np.percentile(moving if moving.size else magnitude, FLOW_SATURATION_PERCENTILE)) or 1.0
    images = sorted(frames_dir.glob("img_*.jpg"))[:n]
    rgb = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in images]
    yy, xx = np.mgrid[-1:1:97j, -1:1:97j]
    key = flow_to_color(np.stack([xx, yy]), max_flow=1.0)
    key[np.sqrt(xx**2 + yy**2) > 1] = 255
    plt = _pyplot()
    fig, axes = plt.subplots(2, n + 1, figsize=(1.9 * (n + 1), 4.1), squeeze=False)
    for i in range(n):
        if i < len(rgb):
            axes[0][i].imshow(rgb[i], interpolation="nearest")
            axes[0][i].set_title(f"frame {i + 1}", fontsize=8)
        axes[1][i].imshow(flow_to_color(flows[i], max_flow=scale), interpolation="nearest")
        axes[1][i].set_title(f"flow {i + 1}\u2192{i + 2}", fontsize=8)
    axes[1][n].imshow(key, interpolation="bilinear")
    axes[1][n].set_title(f"key: full colour = {scale:.1f} px", fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


def embed_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


# --------------------------------------------------------------------------- the report
HTML_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
)


def write_report(
    out: Path,
    cfg,
    stages: dict,
    results: dict,
    fused: dict,
    profiles: dict,
    stage_seconds: dict,
    session_seconds: float,
) -> dict:
    """Write ``report.md``, ``report.html`` and ``figures/*.png``; returns the summary."""

    out = Path(out)
    figures = out / "figures"
    rows = result_rows(cfg, results, fused, profiles)
    total = sum(stage_seconds.values())
    chance = 1.0 / cfg.classes
    best = max(rows, key=lambda r: r["val_top1"])
    conf_src = fused if best["name"] == FUSED else results[best["name"]]
    clips = sorted((out / "flow").rglob("flow.json"))
    clip = next((c for c in clips if "rotate" in c.parent.name), clips[0] if clips else None)
    pair = multigrid_pair(cfg, results)
    figs = {"training curves of every run": plot_training_curves(results, figures / "curves.png")}
    mg_fact, cmp = None, None
    if pair is not None:
        plain_run = next(r for r in cfg.runs if r.name == pair[0])
        mg_run = next(r for r in cfg.runs if r.name == pair[1])
        mg_res = results[pair[1]]
        label = multigrid_label(mg_run, mg_res)
        title = (
            f"{plain_run.arch} on the large set ({stages.get('synth-large', {}).get('train', '?')} train clips, "
            f"{plain_run.frames}x{plain_run.size}): time to accuracy"
        )
        figs[f"{plain_run.arch}, plain vs {label}: time to accuracy"] = plot_time_to_accuracy(
            results[pair[0]], mg_res, figures / "time_to_accuracy.png", title, label
        )
        noise_fig = plot_noise_scale(
            results[pair[0]],
            mg_res,
            figures / "noise_scale.png",
            f"{plain_run.arch} on the large set: gradient noise scale",
        )
        if noise_fig is not None:
            figs[f"{plain_run.arch}: gradient noise scale B_simple"] = noise_fig
        cmp = compare_time_to_accuracy(results[pair[0]], mg_res)
        reach = (
            f"came within {REACH_TOLERANCE:g} point of the plain run's final top-1 after "
            f"{cmp['multigrid_reach_seconds']:.0f} s, {cmp['reach_fraction']:.2f} of the plain run's training time"
            if cmp["multigrid_reach_seconds"] is not None
            else f"did not come within {REACH_TOLERANCE:g} point of the plain run's final top-1"
        )
        mg_fact = (
            f"Multigrid ({plain_run.arch}, {plain_run.frames}x{plain_run.size}, stride {plain_run.stride}, "
            f"large set): {label} trained {cmp['multigrid_seconds']:.0f} s to {cmp['multigrid_top1']:.1f}% "
            f"against the plain schedule's {cmp['plain_seconds']:.0f} s to {cmp['plain_top1']:.1f}%; it "
            f"{reach} (training seconds, validation left out)." + noise_facts(results[pair[0]], mg_res)
        )
    figs.update(
        {
            f"confusion matrix ({best['arch']}, val)": plot_confusion_png(
                conf_src["confusion"],
                conf_src["classes"],
                f"{best['arch']}: val top-1 {100 * best['val_top1']:.1f}%",
                figures / "confusion.png",
            ),
        }
    )
    if clip is not None:
        rel = clip.parent.relative_to(out / "flow")
        figs[f"RGB frames and TV-L1 flow of {clip.parent.name} (colour wheel: hue = direction)"] = flow_strip(
            out / "frames" / rel, clip.parent, figures / "flow_strip.png"
        )
    flow = stages["flow"]
    large = stages.get("synth-large")
    facts = [
        f"Machine: {machine_text()}; torch threads per training run: {cfg.threads}.",
        f"Data: synthetic motion set, {cfg.classes} classes x {cfg.per_class} clips "
        f"({stages['synth']['train']} train / {stages['synth']['val']} val), {cfg.clip_frames} frames of "
        f"{cfg.clip_size}x{cfg.clip_size}; chance = {100 * chance:.1f}%"
        + (
            f"; the multigrid comparison's large set: {cfg.classes} classes x {cfg.large_per_class} clips "
            f"({large['train']} train / {large['val']} val), {cfg.large_clip_frames} frames at "
            f"{cfg.large_frames_fps:g} fps."
            if large
            else "."
        ),
        f"Flow: TV-L1, {flow['backend']} backend, nscales {flow['params']['nscales']}, warps "
        f"{flow['params']['warps']}, {flow['params']['outer_iterations']} outer x "
        f"{flow['params']['inner_iterations']} inner iterations (all in each clip's flow.json).",
        f"Fusion: late fusion of saved softmax scores, single-frame RGB x {cfg.fusion_weights[0]:g} + "
        f"temporal flow x {cfg.fusion_weights[1]:g}.",
        *([mg_fact] if mg_fact else []),
        f"Wall-clock of all stages: {total / 60:.1f} min ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in stage_seconds.items())
        + ").",
        "GFLOPs: multiply-adds of one clip at the input shown (fvcore convention); clips/s: inference at "
        f"batch 8 on the CPU with {cfg.threads} thread(s); val top-1: video accuracy on the val split.",
    ]
    md = ["# vidact demo report", "", markdown_table(rows)]
    md += [f"- {f}" for f in facts]
    md += ["", "Figures (in report.html, and as PNG files):", ""]
    md += [f"- {title}: `figures/{p.name}`" for title, p in figs.items()]
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    body = ["<h1>vidact demo report</h1>", html_table(rows), "<ul>"]
    body += [f"<li>{html.escape(f)}</li>" for f in facts] + ["</ul>"]
    for title, p in figs.items():
        body.append(f'<h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" src="{embed_png(p)}">')
    page = (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>vidact demo report</title>'
        f"<style>{HTML_STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )
    atomic_write_text(out / "report.html", page)
    return {
        "out": str(out),
        "report_md": str(out / "report.md"),
        "report_html": str(out / "report.html"),
        "rows": rows,
        "chance": chance,
        "wall_seconds": total,
        "session_seconds": session_seconds,
        "stage_seconds": stage_seconds,
        "multigrid": cmp,
        "machine": machine_text(),
    }
