"""What one search is: its settings (:class:`SearchConfig`), the training budget per candidate, and the
training of one candidate through :func:`vidact.train.engine.fit`."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from vidact.errors import UsageError
from vidact.io.atomic import atomic_write_text
from vidact.models.x3d import X3DFactors, x3d_from_factors
from vidact.search.axes import AXES, X2D

# Train-config keys that the search sets itself (per candidate) and so cannot be overridden.
SEARCH_KEYS = ("arch", "data", "out", "frames", "size", "stride", "epochs", "num_classes", "width_mult")
INPUT_ARCH = "x3d-xs"  # whose registry entry gives the input modality/channels (frames/size/stride: the factors)


@dataclass(frozen=True)
class Budget:
    """Training per candidate: whole epochs, or a fixed number of iterations (one shortened epoch)."""

    epochs: int = 0
    iterations: int = 0

    def __str__(self) -> str:
        return f"{self.iterations}it" if self.iterations else f"{self.epochs}ep"


def parse_budget(text: str | int) -> Budget:
    """``"2"`` or ``"2ep"`` -> 2 epochs; ``"30it"`` -> 30 iterations."""
    m = re.fullmatch(r"\s*(\d+)\s*(ep|epochs?|it|iters?|iterations?)?\s*", str(text).lower())
    if not m or int(m.group(1)) < 1:
        raise UsageError(f"budget must look like 2 or 2ep (epochs) or 30it (iterations), not {text!r}")
    n, unit = int(m.group(1)), m.group(2) or "ep"
    return Budget(iterations=n) if unit.startswith("it") else Budget(epochs=n)


@dataclass
class SearchConfig:
    """Everything one search needs; the fields in :meth:`fingerprint` must match to resume a search."""

    data: str
    out: str = "runs/x3d-expand"
    steps: int = 3
    budget: str = "1ep"
    target_gflops: float | None = None
    seed: int = 0
    base: X3DFactors = X2D
    goal_ratio: float = 2.0
    axes: tuple[str, ...] = tuple(AXES)
    batch_size: int = 8
    optimizer: str = "adamw"
    lr: float = 0.002
    device: str = "auto"
    threads: int = 0  # torch CPU threads during the search; 0 = torch's default
    overrides: tuple[str, ...] = ()

    def validate(self) -> SearchConfig:
        parse_budget(self.budget)
        if self.steps < 1:
            raise UsageError(f"steps must be at least 1, got {self.steps}")
        if not self.goal_ratio > 1.0:
            raise UsageError(f"the FLOPs ratio per step must be above 1, got {self.goal_ratio}")
        if self.threads < 0:
            raise UsageError(f"threads must be >= 0, got {self.threads}")
        if self.target_gflops is not None and not self.target_gflops > 0:
            raise UsageError(f"target GFLOPs must be positive, got {self.target_gflops}")
        unknown = [a for a in self.axes if a not in AXES]
        if unknown or not self.axes:
            raise UsageError(f"unknown axis {unknown[0] if unknown else '(none)'!r}; use {', '.join(AXES)}")
        for item in self.overrides:
            key = item.partition("=")[0].strip()
            if key in SEARCH_KEYS:
                raise UsageError(f"--set {key}=...: the search sets {key} itself")
        return self

    def fingerprint(self) -> dict:
        """What decides a candidate's result; a folder searched with other values cannot be resumed."""
        return {
            "data": str(Path(self.data).resolve()),
            "budget": str(parse_budget(self.budget)),
            "seed": self.seed,
            "base": self.base.to_dict(),
            "goal_ratio": self.goal_ratio,
            "batch_size": self.batch_size,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "overrides": list(self.overrides),
        }


def candidate_train_config(cfg: SearchConfig, factors: X3DFactors, run_dir: str | Path):
    """The :class:`TrainConfig` of one candidate: the budget, the search's optimiser, the factors' input."""
    from vidact.train.config import TrainConfig, load_config

    budget = parse_budget(cfg.budget)
    base = TrainConfig(
        arch=INPUT_ARCH,
        data=str(cfg.data),
        out=str(run_dir),
        frames=factors.gamma_t,
        size=factors.gamma_s,
        stride=factors.gamma_tau,
        epochs=budget.epochs or 1,
        batch_size=cfg.batch_size,
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        seed=cfg.seed,
        device=cfg.device,
        log_every=1_000_000,
    )
    return load_config(None, list(cfg.overrides), base=base)


@dataclass(frozen=True)
class TrainResult:
    top1: float
    seconds: float


def train_candidate(cfg: SearchConfig, factors: X3DFactors, run_dir: Path) -> TrainResult:
    """Train the X3D at ``factors`` with the search's budget through :func:`vidact.train.engine.fit`."""
    from vidact.train.data import build_data, config_input
    from vidact.train.engine import fit
    from vidact.train.samplers import IterationBudgetSampler

    tcfg = candidate_train_config(cfg, factors, run_dir)
    inp = config_input(tcfg)
    data = build_data(tcfg, inp)
    if data.val_set is None:
        raise UsageError(f"{cfg.data}: the search ranks candidates on a validation split; add {tcfg.val_split}.csv")
    model = x3d_from_factors(factors, num_classes=len(data.classes), in_channels=inp.channels, dropout=tcfg.dropout)
    budget = parse_budget(cfg.budget)
    sampler = (
        IterationBudgetSampler(len(data.train_set), tcfg.batch_size, budget.iterations, tcfg.seed)
        if budget.iterations
        else None
    )
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an interrupted candidate starts again
    run_dir.mkdir(parents=True)
    atomic_write_text(run_dir / "factors.json", json.dumps(factors.to_dict(), indent=2) + "\n")
    summary = fit(tcfg, data, progress=False, batch_sampler=sampler, model=model)
    return TrainResult(top1=float(summary["final_val_top1"]), seconds=float(summary["seconds"]))
