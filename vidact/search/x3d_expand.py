"""X3D's progressive network expansion (Feichtenhofer, CVPR 2020): grow a tiny X2D one axis at a time.

Every step builds one candidate per axis -- temporal duration ``t``, frame rate ``tau``, spatial
resolution ``s``, width ``w``, bottleneck width ``b``, depth ``d`` -- each expanded on its axis so
the multiply-adds are about twice the current model's (solved with the FLOP counter on the meta
device), trains every candidate with the same short budget, and keeps the one with the best
validation top-1 (ties: fewer FLOPs). Optionally the axis expanded last is then contracted until
the model fits a target GFLOPs. Every candidate is one line of ``OUT/trajectory.jsonl``; a rerun
reads finished candidates back instead of training them again.

The pieces: :mod:`.axes` (the six axes), :mod:`.cost` (FLOPs and the solver), :mod:`.candidates`
(settings, budget, training one candidate), :mod:`.trajectory` (the on-disk record); this module
runs the search.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from vidact.errors import UsageError, VidactError
from vidact.io.atomic import atomic_write_text
from vidact.models.x3d import X3DFactors
from vidact.search.axes import AXES
from vidact.search.candidates import SearchConfig, TrainResult, candidate_train_config, parse_budget, train_candidate
from vidact.search.cost import CostModel, contract, expand
from vidact.search.trajectory import RECORD_KEYS, Trajectory, factors_of

TRAJECTORY, PLOT, SETTINGS, COST_CACHE = "trajectory.jsonl", "trajectory.png", "search.json", "flops_cache.json"

TrainFn = Callable[[X3DFactors, Path], TrainResult]


def choose(records: list[dict]) -> dict:
    """Best top-1; ties go to fewer FLOPs, then to the axis listed first."""
    order = list(AXES)
    return min(records, key=lambda r: (-r["top1"], r["gflops"], order.index(r["axis"]) if r["axis"] in order else -1))


def _check_settings(out: Path, cfg: SearchConfig) -> None:
    path = out / SETTINGS
    new = cfg.fingerprint()
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            old = None
        if isinstance(old, dict):
            for key, value in new.items():
                if key in old and old[key] != value:
                    raise UsageError(
                        f"{out}: holds a search with other settings ({key}: {old[key]} here, "
                        f"{value} now); use another --out or remove it"
                    )
    atomic_write_text(path, json.dumps(new, indent=2) + "\n")


def default_cost_model(cfg: SearchConfig) -> CostModel:
    """Counts for the data set's classes and the clip's channels, cached in ``OUT/flops_cache.json``."""
    from vidact.data.annotations import load_dataset_dir
    from vidact.train.data import config_input

    channels = config_input(candidate_train_config(cfg, cfg.base, cfg.out)).channels
    return CostModel(len(load_dataset_dir(cfg.data).classes), channels, path=Path(cfg.out) / COST_CACHE)


def run_search(
    cfg: SearchConfig,
    train_fn: TrainFn | None = None,
    cost: CostModel | None = None,
    on_event: Callable[[str, dict], None] | None = None,
) -> dict:
    """Run (or resume) the search; returns the summary. ``train_fn(factors, run_dir)`` defaults to
    :func:`train_candidate`; ``on_event(kind, info)`` reports ``plan``, ``start``, ``done`` and ``skip``."""
    cfg.validate()
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _search(cfg, train_fn, cost, on_event)
    finally:
        torch.set_num_threads(threads)


class _Search:
    """One search run: the trajectory, the cost model and how candidates are trained, in one place."""

    def __init__(self, cfg: SearchConfig, train_fn: TrainFn, cost: CostModel, emit: Callable[[str, dict], None]):
        self.cfg, self.train_fn, self.cost, self.emit = cfg, train_fn, cost, emit
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        _check_settings(self.out, cfg)
        self.traj = Trajectory(self.out / TRAJECTORY)
        self.trained = self.reused = 0

    def train_and_score(self, step: int, kind: str, axis: str, factors: X3DFactors, ratio: float) -> dict:
        """The trajectory record of one candidate: read back when a rerun has it, else trained now."""
        rec = self.traj.find(step, kind, axis, factors)
        info = {"step": step, "kind": kind, "axis": axis, "factors": factors.to_dict()}
        if rec is not None:
            self.reused += 1
            self.emit("done", {**info, "reused": True, "top1": rec["top1"]})
            return rec
        self.emit("start", info)
        c = self.cost(factors)
        self.cost.save()
        result = self.train_fn(factors, self.out / "runs" / f"step{step}-{kind}-{axis}")
        rec = {
            "step": step,
            "kind": kind,
            "axis": axis,
            "factors": factors.to_dict(),
            "gflops": c.gflops,
            "params": c.params,
            "flops_ratio": round(ratio, 4),
            "top1": result.top1,
            "train_seconds": round(result.seconds, 3),
            "chosen": kind == "base",
        }
        self.traj.append(rec)
        self.trained += 1
        self.emit("done", {**info, "reused": False, "top1": result.top1})
        return rec

    def expansion_step(self, step: int, current: X3DFactors, skipped: list[dict]) -> dict:
        """Grow ``current`` along every axis, train each candidate, keep the best."""
        results = []
        for axis in self.cfg.axes:
            grown = expand(current, axis, self.cost, self.cfg.goal_ratio)
            if grown is None:
                skipped.append({"step": step, "axis": axis, "reason": f"{AXES[axis].label} cannot grow further"})
                self.emit("skip", skipped[-1])
                continue
            results.append(self.train_and_score(step, "expand", axis, *grown))
        if not results:
            raise VidactError(f"step {step}: no axis can be expanded from {current}")
        return choose(results)

    def contraction(self, path: list[dict]) -> dict | None:
        """With a target, the last axis contracted until the model fits it (None when it already does)."""
        current, target = factors_of(path[-1]), self.cfg.target_gflops
        if target is None or self.cost(current).macs <= target * 1e9:
            return None
        axis = path[-1]["axis"]
        shrunk = contract(current, axis, self.cost, int(target * 1e9))
        ratio = self.cost(shrunk).macs / self.cost(current).macs
        return self.train_and_score(self.cfg.steps + 1, "contract", axis, shrunk, ratio)

    def run(self) -> dict:
        from vidact.search.plot import plot_trajectory

        started, cfg = time.perf_counter(), self.cfg
        self.emit("plan", {"candidates": 1 + cfg.steps * len(cfg.axes) + (1 if cfg.target_gflops else 0)})
        path = [self.train_and_score(0, "base", "base", cfg.base, 1.0)]
        skipped: list[dict] = []
        for step in range(1, cfg.steps + 1):
            path.append(self.expansion_step(step, factors_of(path[-1]), skipped))
            self.traj.mark_chosen(path)
        contraction = self.contraction(path)
        if contraction is not None:
            path.append(contraction)
            self.traj.mark_chosen(path)
        self.cost.save()
        plot_trajectory(self.traj.records, self.out / PLOT)
        return self.summary(path, contraction, skipped, time.perf_counter() - started)

    def summary(self, path: list[dict], contraction: dict | None, skipped: list[dict], seconds: float) -> dict:
        cfg, out = self.cfg, self.out
        return {
            "out": str(out),
            "steps": cfg.steps,
            "budget": str(parse_budget(cfg.budget)),
            "goal_ratio": cfg.goal_ratio,
            "target_gflops": cfg.target_gflops,
            "path": [_path_entry(r) for r in path],
            "final": _path_entry(path[-1]),
            "contraction": None if contraction is None else _path_entry(contraction),
            "skipped": skipped,
            "candidates": len(self.traj.records),
            "trained": self.trained,
            "reused": self.reused,
            "flop_counts": self.cost.counted,
            "seconds": round(seconds, 2),
            "trajectory": str(out / TRAJECTORY),
            "plot": str(out / PLOT),
        }


def _search(
    cfg: SearchConfig, train_fn: TrainFn | None, cost: CostModel | None, on_event: Callable[[str, dict], None] | None
) -> dict:
    if train_fn is None:
        if not Path(cfg.data).is_dir():
            raise UsageError(f"{cfg.data}: data folder not found")
        train_fn = functools.partial(train_candidate, cfg)
    if cost is None:
        cost = default_cost_model(cfg)
    return _Search(cfg, train_fn, cost, on_event or (lambda kind, info: None)).run()


def _path_entry(rec: dict) -> dict:
    return {k: rec[k] for k in RECORD_KEYS if k != "chosen"}
