"""``vidact demo``: the field's story end to end on the built-in synthetic motion data set.

synthesise -> extract frames -> extract TV-L1 flow (torch) -> train and evaluate single-frame (RGB),
the two-stream temporal net (stacked flow), their late fusion, a small C3D and X3D-XS; then, on a
larger synthetic set (``OUT/data-large``, where the coarse multigrid batches are a small part of an
epoch), C3D-BN with the plain schedule (measuring the gradient noise scale) and with ``--multigrid
auto`` (a short probe measures the critical batch and picks the schedule and batch rule) -> profile
every model ->
``OUT/report.md`` and ``OUT/report.html``.

Each stage writes ``OUT/stages/<stage>.json`` atomically when it finishes; a re-run loads those
results and skips the stage, so an interrupted demo resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vidact.demo.report import write_report
from vidact.errors import UsageError
from vidact.io.atomic import atomic_write_text
from vidact.io.progress import make_progress, stderr_console

STAGES_DIR = "stages"


@dataclass(frozen=True)
class RunSpec:
    """One training run of the demo: an architecture, its input and its budget."""

    name: str
    arch: str
    modality: str  # rgb or flow
    frames: int
    size: int
    stride: int
    epochs: int
    width_mult: float = 1.0
    lr: float = 0.01
    optimizer: str = "sgd"
    batch_size: int = 8
    multigrid: str = "none"
    dataset: str = "main"  # main: the demo's set; large: the larger set of the multigrid comparison
    warmup_epochs: float = 0.0
    clip_grad: float = 0.0  # max gradient norm (0: off); the multigrid pair clips its 8x-batch steps
    noise_scale_every: int = 0  # measure the gradient noise scale every N steps (0: off)


@dataclass(frozen=True)
class DemoConfig:
    """Data set size, flow solver effort and the training runs; :data:`FULL` and :data:`QUICK`."""

    classes: int = 8
    per_class: int = 48  # with fewer clips the small 3D nets memorise appearance instead of motion
    clip_frames: int = 30
    clip_size: int = 64
    frames_fps: float = 12.5  # clips are written at 25 fps; every 2nd frame doubles the motion per frame
    # TV-L1 at demo effort (OpenCV's defaults are nscales 5, warps 5, 10 outer x 30 inner iterations)
    flow_nscales: int = 3
    flow_warps: int = 1
    flow_outer: int = 2
    flow_inner: int = 10
    # the multigrid comparison's set: more clips, so that an 8x batch is a small part of an epoch,
    # and frames at the full 25 fps so a 16-frame clip at stride 2 fits
    large_per_class: int = 0  # 0: no large set (and no multigrid runs)
    large_clip_frames: int = 36
    large_frames_fps: float = 25.0
    workers: int = 2  # frame/flow extraction processes
    threads: int = 1  # torch CPU threads while training (one per process avoids oversubscription)
    bench_iters: int = 3
    runs: tuple[RunSpec, ...] = ()
    fusion_weights: tuple[float, float] = (1.0, 1.5)  # (RGB, flow), as in Simonyan & Zisserman
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _runs(
    epochs: int, x3d_epochs: int, size: int, c3d_epochs: int, mg_epochs: int, mg_frames: int
) -> tuple[RunSpec, ...]:
    adam = {"optimizer": "adamw", "lr": 0.002}  # the nets without BatchNorm barely move with SGD in a few epochs
    c3d = {"width_mult": 0.125, "optimizer": "adamw", "lr": 0.001}
    large = {**c3d, "warmup_epochs": 0.5, "clip_grad": 5.0}  # benchmarks/multigrid.py's recipe
    large_clip = ("c3d-bn", "rgb", mg_frames, size, 2, mg_epochs)
    return (
        RunSpec("single-frame", "single-frame", "rgb", 1, size, 1, epochs, width_mult=0.25, **adam),
        RunSpec("two-stream-temporal", "two-stream-temporal", "flow", 10, size, 1, epochs, width_mult=0.25, **adam),
        # C3D with BatchNorm: the BN-free original does not leave chance from scratch at this scale
        RunSpec("c3d-bn", "c3d-bn", "rgb", 8, size, 1, c3d_epochs, **c3d),
        # X3D-XS learns the motion classes from 8 frames at stride 2 with a high SGD LR (benchmarks/x3d_parity.py)
        RunSpec("x3d-xs", "x3d-xs", "rgb", 8, size, 2, x3d_epochs, width_mult=0.5, lr=0.2),
        # multigrid where it is meant to work: a larger set, T=16 (the coarsest clip keeps 4 frames); the plain
        # run measures the gradient noise scale, the multigrid run's probe picks its schedule and batch rule
        RunSpec("c3d-bn-large", *large_clip, dataset="large", noise_scale_every=8, **large),
        RunSpec("c3d-bn-large-multigrid", *large_clip, dataset="large", multigrid="auto", **large),
    )


FULL = DemoConfig(
    large_per_class=160, runs=_runs(epochs=12, x3d_epochs=24, size=48, c3d_epochs=24, mg_epochs=6, mg_frames=16)
)
QUICK = DemoConfig(
    classes=3,
    per_class=4,
    clip_frames=24,
    clip_size=32,
    flow_nscales=1,
    flow_warps=1,
    flow_outer=1,
    flow_inner=2,
    bench_iters=1,
    large_per_class=8,
    large_clip_frames=20,
    runs=_runs(epochs=1, x3d_epochs=1, size=32, c3d_epochs=1, mg_epochs=1, mg_frames=8),
)


# --------------------------------------------------------------------------- stage bookkeeping
class StageLog:
    """Finished stages of one demo folder: ``OUT/stages/<name>.json`` holds each stage's result."""

    def __init__(self, out: Path):
        self.folder = out / STAGES_DIR

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    def done(self, name: str) -> dict | None:
        path = self.path(name)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return None  # cannot happen with atomic writes; redo the stage if it ever does

    def finish(self, name: str, result: dict) -> dict:
        atomic_write_text(self.path(name), json.dumps(result, indent=2, default=str) + "\n")
        return result


def run_stage(log: StageLog, name: str, number: int, total: int, fn: Callable[[], dict]) -> dict:
    """Run ``fn`` unless ``name`` finished before; record its result and wall-clock seconds."""
    previous = log.done(name)
    if previous is not None:
        stderr_console.print(f"[{number}/{total}] {name}: done before, skipped", highlight=False)
        return previous
    stderr_console.print(f"[{number}/{total}] {name}", highlight=False)
    started = time.perf_counter()
    result = fn()
    result["stage_seconds"] = time.perf_counter() - started
    return log.finish(name, result)


# --------------------------------------------------------------------------- the stages
DATA_DIRS = {"main": ("data", "frames"), "large": ("data-large", "frames-large")}  # videos, frame folders


def synthesise(out: Path, cfg: DemoConfig, dataset: str = "main") -> dict:
    from vidact.data.synthetic import SynthConfig, generate

    per_class, frames = (
        (cfg.per_class, cfg.clip_frames) if dataset == "main" else (cfg.large_per_class, cfg.large_clip_frames)
    )
    # the large set's seed differs so its clips are not the main set's
    synth = SynthConfig(
        classes=cfg.classes, per_class=per_class, frames=frames, size=cfg.clip_size, seed=cfg.seed + (dataset != "main")
    )
    with make_progress() as bar:
        task = bar.add_task("synth", total=cfg.classes * per_class, status="")
        return generate(out / DATA_DIRS[dataset][0], synth, progress=lambda: bar.advance(task))


def extract_frames_stage(out: Path, cfg: DemoConfig, dataset: str = "main") -> dict:
    from vidact.data.extract_frames import FrameOptions, extract_frames

    videos, frames = (out / d for d in DATA_DIRS[dataset])
    fps = cfg.frames_fps if dataset == "main" else cfg.large_frames_fps
    result = extract_frames(videos, frames, list_path=videos, options=FrameOptions(fps=fps), workers=cfg.workers)
    if result["failed"]:
        raise UsageError(f"frame extraction failed for {result['failed']} videos; see {result['failures_file']}")
    return {k: result[k] for k in ("done", "skipped", "failed", "out")}


def flow_options(cfg: DemoConfig):
    from vidact.flow.options import FlowOptions
    from vidact.flow.tvl1 import TVL1Params

    params = TVL1Params(
        nscales=cfg.flow_nscales, warps=cfg.flow_warps, outer_iterations=cfg.flow_outer, inner_iterations=cfg.flow_inner
    )
    return FlowOptions(backend="torch", device="cpu", batch=1, compile=False, params=params)


def extract_flow_stage(out: Path, cfg: DemoConfig) -> dict:
    from vidact.flow.extract import extract_flow

    options = flow_options(cfg)
    result = extract_flow(out / "frames", out / "flow", list_path=out / "frames", options=options, workers=cfg.workers)
    if result["failed"]:
        raise UsageError(f"flow extraction failed for {result['failed']} videos; see {result['failures_file']}")
    return {
        **{k: result[k] for k in ("done", "skipped", "failed", "out", "backend")},
        "params": options.params.to_dict(),
    }


def train_config(out: Path, run: RunSpec, cfg: DemoConfig):
    """The :class:`~vidact.train.config.TrainConfig` of one demo run."""
    from vidact.train.config import TrainConfig

    return TrainConfig(
        arch=run.arch,
        data=str(out / DATA_DIRS[run.dataset][1]),
        out=str(out / "runs" / run.name),
        modality=run.modality,
        frames=run.frames,
        size=run.size,
        stride=run.stride,
        width_mult=run.width_mult,
        flow_root=str(out / "flow") if run.modality == "flow" else "",
        epochs=run.epochs,
        batch_size=run.batch_size,
        lr=run.lr,
        optimizer=run.optimizer,
        weight_decay=1e-4,
        warmup_epochs=run.warmup_epochs,
        clip_grad=run.clip_grad,
        dropout=0.3,
        threads=cfg.threads,
        device="cpu",
        multigrid=run.multigrid,
        noise_scale_every=run.noise_scale_every,
        seed=cfg.seed,
        log_every=1,
    ).validate()


def train_and_evaluate(out: Path, run: RunSpec, cfg: DemoConfig) -> dict:
    """Train one run, then test its best checkpoint on val (scores saved for fusion)."""
    from vidact.evaluate.multiview import evaluate_checkpoint
    from vidact.train.engine import train
    from vidact.train.metrics_log import read_metrics

    lines: list[str] = []
    summary = train(train_config(out, run, cfg), notify=lines.append)
    run_dir = out / "runs" / run.name
    report = evaluate_checkpoint(
        summary["best"] or summary["last"],
        out / DATA_DIRS[run.dataset][1],
        split="val",
        device="cpu",
        save_scores=run_dir / "val_scores.npz",
    )
    history = [
        {k: r.get(k) for k in ("epoch", "seconds", "precise_bn_seconds", "train_loss", "val_top1", "clips_per_s")}
        for r in summary["history"]
    ]
    return {
        "run": dataclasses.asdict(run),
        "train_seconds": summary["seconds"],
        "train_clips_per_s": summary["clips_per_s"],
        "best_val_top1": summary["best_val_top1"],
        "history": history,
        "video_top1": report["video_top1"],
        "clip_top1": report["clip_top1"],
        "confusion": report["confusion"],
        "classes": [row["class"] for row in report["per_class"]],
        "scores": report["scores"],
        "checkpoint": summary["best"] or summary["last"],
        "decisions": lines,
        "multigrid": summary["multigrid"],
        "multigrid_batch": summary["multigrid_batch"],
        "probe": summary["probe"],
        "noise_scale": summary["noise_scale"],
        "noise": [
            {k: r.get(k) for k in ("epoch_f", "b_simple", "b_small", "b_big")}
            for r in read_metrics(run_dir)
            if r.get("kind") == "noise"
        ],
    }


def fuse_stage(results: dict[str, dict], cfg: DemoConfig) -> dict:
    """Late fusion of the single-frame (RGB) and temporal (flow) saved scores."""
    from vidact.evaluate.fuse import fuse_scores
    from vidact.evaluate.metrics import confusion_matrix
    from vidact.evaluate.multiview import ViewScores

    rgb, flow = results["single-frame"], results["two-stream-temporal"]
    with make_progress() as bar:
        task = bar.add_task("fuse", total=1, status="")
        fused = fuse_scores(
            [ViewScores.load(rgb["scores"]), ViewScores.load(flow["scores"])],
            list(cfg.fusion_weights),
            names=["single-frame", "two-stream-temporal"],
        )
        bar.advance(task)
    conf = confusion_matrix(fused["fused_scores"].argmax(axis=1), fused["labels"], fused["fused_scores"].shape[1])
    return {
        "weights": list(cfg.fusion_weights),
        "video_top1": fused["fused_top1"],
        "video_top5": fused["fused_top5"],
        "confusion": conf.tolist(),
        "classes": rgb["classes"],
    }


def profile_stage(runs: tuple[RunSpec, ...], num_classes: int, cfg: DemoConfig) -> dict:
    """Params and GFLOPs (meta device) and inference clips/s (batch 8, CPU) of each run's model."""
    from vidact.profile.bench import benchmark_arch
    from vidact.profile.flops import profile_arch

    profiles = {}
    with make_progress() as bar:
        task = bar.add_task("profile", total=len(runs), status="")
        for run in runs:
            kwargs = {"width_mult": run.width_mult, "in_channels": 2 if run.modality == "flow" else 3}
            flops = profile_arch(run.arch, run.frames, run.size, num_classes=num_classes, **kwargs)
            bench = benchmark_arch(
                run.arch,
                run.frames,
                run.size,
                batch=8,
                num_classes=num_classes,
                device="cpu",
                warmup=1,
                iters=cfg.bench_iters,
                threads=cfg.threads,
                **kwargs,
            )
            profiles[run.name] = {
                "params": flops.params,
                "gflops": flops.gflops,
                "input": flops.to_dict()["input"],
                "infer_clips_per_s": bench.forward_clips_per_s,
            }
            bar.update(task, advance=1, status=run.name)
    return profiles


# --------------------------------------------------------------------------- the pipeline
def run_demo(out: str | Path, cfg: DemoConfig = FULL, quick: bool = False) -> dict:
    """Run every stage into ``out`` (finished stages are skipped); returns the report summary."""
    if quick:
        cfg = QUICK
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{out}: cannot create the demo folder: {exc.strerror or exc}") from None
    settings = out / "demo.json"
    if settings.is_file() and json.loads(settings.read_text(encoding="utf-8")) != json.loads(json.dumps(cfg.to_dict())):
        raise UsageError(f"{out} holds a demo run with other settings (e.g. --quick); choose another folder")
    atomic_write_text(settings, json.dumps(cfg.to_dict(), indent=2) + "\n")

    log = StageLog(out)
    data_stages = [
        ("synth", lambda: synthesise(out, cfg)),
        ("frames", lambda: extract_frames_stage(out, cfg)),
        ("flow", lambda: extract_flow_stage(out, cfg)),
    ]
    if cfg.large_per_class:
        data_stages += [
            ("synth-large", lambda: synthesise(out, cfg, "large")),
            ("frames-large", lambda: extract_frames_stage(out, cfg, "large")),
        ]
    total = len(data_stages) + len(cfg.runs) + 3
    started = time.perf_counter()
    stages = {name: run_stage(log, name, i + 1, total, fn) for i, (name, fn) in enumerate(data_stages)}
    results = {}
    first = len(data_stages) + 1
    for i, run in enumerate(cfg.runs):
        results[run.name] = run_stage(
            log, f"train-{run.name}", first + i, total, lambda run=run: train_and_evaluate(out, run, cfg)
        )
    n = first + len(cfg.runs)
    fused = run_stage(log, "fuse", n, total, lambda: fuse_stage(results, cfg))
    profiles = run_stage(log, "profile", n + 1, total, lambda: profile_stage(cfg.runs, cfg.classes, cfg))
    stderr_console.print(f"[{total}/{total}] report", highlight=False)
    seconds = {
        name: stage.get("stage_seconds", 0.0)
        for name, stage in [
            *stages.items(),
            *((f"train-{k}", v) for k, v in results.items()),
            ("fuse", fused),
            ("profile", profiles),
        ]
    }
    profiles = {k: v for k, v in profiles.items() if k != "stage_seconds"}
    return write_report(
        out, cfg, stages, results, fused, profiles, stage_seconds=seconds, session_seconds=time.perf_counter() - started
    )
