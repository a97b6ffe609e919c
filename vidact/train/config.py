"""Typed training configuration: defaults, TOML files, ``--set key=value`` overrides.

One flat dataclass, so every key is reachable from ``--set`` and a TOML file is a plain
list of ``key = value`` lines. Unknown keys and bad values raise a one-line
:class:`~vidact.errors.UsageError` naming close matches (never silently ignored).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from vidact.errors import UsageError, first_line
from vidact.runtime.device import AMP_MODES
from vidact.train.lr import SCHEDULES
from vidact.train.multigrid import BATCH_RULES, LR_SCALINGS, SHORT_CYCLE_RULES, STRIDE_RULES
from vidact.train.multigrid import MODES as MULTIGRID_MODES
from vidact.train.preemption import Cadence

OPTIMIZERS = ("sgd", "adamw")
AMP_CHOICES = ("auto", *AMP_MODES)  # auto: the family's preference on CUDA, none on the CPU
CHANNELS_LAST_CHOICES = ("auto", "on", "off")  # auto: the family's measured preference on the device
HFLIP_MODES = ("auto", "on", "off")  # auto: as the data set folder says (dataset.json)
MODALITIES = ("", "rgb", "flow", "rgb+flow")  # "" = the architecture's default
PRECISE_BN_MULTIGRID = 20  # batches of precise BN statistics per validation in a multigrid run
MULTIGRID_LR_SCALINGS = ("auto", *LR_SCALINGS)  # auto: linear for SGD, sqrt for AdamW
MULTIGRID = (*MULTIGRID_MODES, "auto")  # auto: a short probe measures the critical batch and picks


@dataclass
class TrainConfig:
    """Everything a training run needs; saved with each checkpoint and as ``RUN/config.toml``."""

    # what to train, on what
    arch: str = "c3d"
    data: str = ""
    out: str = "runs/train"
    modality: str = ""
    frames: int = 0  # 0 = the architecture's default
    size: int = 0
    stride: int = 0
    flow_root: str = ""
    num_classes: int = 0  # 0 = from classes.txt
    width_mult: float = 1.0
    dropout: float = 0.5
    recipe: str = ""  # the recipe this config started from (vidact.train.recipes), "" = none
    # starting weights and fine-tuning
    pretrained: str = ""  # zoo name, imagenet, file path or http(s)/file URL; "" = random init
    freeze: str = ""  # "backbone" (all but the classifier) or module names "stem,res2"; "" = none
    backbone_lr_mult: float = 1.0  # the classifier trains at lr, the rest at lr x this
    # optimisation
    epochs: int = 10
    batch_size: int = 8
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.1
    lr_steps: list[int] = field(default_factory=list)  # epochs where "step" multiplies by lr_gamma
    lr_gamma: float = 0.1
    min_lr: float = 0.0
    label_smoothing: float = 0.0
    hflip: str = "auto"  # random horizontal flip in training: auto | on | off
    scale_range: list[int] = field(default_factory=list)  # training short-side jitter [min, max]; [] = crop x 8/7..10/7
    clip_grad: float = 0.0  # max gradient norm; 0 = off
    # speed
    device: str = "auto"
    amp: str = "auto"
    channels_last: str = "auto"
    compile: bool = False
    workers: int = -1  # loader worker processes; -1: one per core of this process's share (vidact.data.loader)
    threads: int = 0  # torch CPU threads; 0: this process's share of the usable cores
    multigrid: str = "none"
    precise_bn_batches: int = -1  # BatchNorm statistics recomputed over N batches before each validation;
    # -1: 20 with multigrid (its running statistics come from other shapes), 0 (off) otherwise
    multigrid_lr_scaling: str = "auto"  # LR x batch multiplier (linear), x its square root (sqrt), or x1
    multigrid_short_cycle: str = "pyslowfast"  # short-cycle crops of the default size, or "relative" to the current
    multigrid_stride: str = "span"  # shorter clips' strides up to the full clip's span (PySlowFast), or "base"
    multigrid_batch: str = "paper"  # batch multipliers: the paper's, bounded by the critical batch, or fixed
    critical_batch: float = 0.0  # B_simple in clips for the bounded rule; 0 = measured by the probe
    noise_scale_every: int = 0  # measure the gradient noise scale every N steps (0 = off)
    lr_finder: bool = False  # --lr auto: an LR range test in the probe picks lr
    probe_decision: str = ""  # what the probe measured and decided (written by the run, not an input)
    # validation, logging, reproducibility
    val_split: str = "val"
    val_every: int = 1
    log_every: int = 10
    seed: int = 0
    deterministic: bool = False
    # memory and long jobs
    accumulate: int = 1  # micro-batches of batch_size clips per optimizer step (gradient accumulation)
    activation_checkpointing: str = ""  # "all" stages, or module names "res3,res4": recomputed in backward
    checkpoint_every: str = ""  # last.pt also every N steps ("500") or every period ("30m", "90s"); "" = epochs only

    def validate(self) -> TrainConfig:
        """Raise a one-line UsageError for the first invalid value; return self.

        The checks run once per set of values: a config that passes from ``load_config`` to ``fit``
        unchanged is not checked again.
        """
        values = dataclasses.astuple(self)
        if self.__dict__.get("_validated_values") == values:
            return self
        self._check()
        self.__dict__["_validated_values"] = values
        return self

    def _check(self) -> None:
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("amp", self.amp, AMP_CHOICES)
        _choice("channels_last", self.channels_last, CHANNELS_LAST_CHOICES)
        _choice("hflip", self.hflip, HFLIP_MODES)
        _choice("modality", self.modality, MODALITIES)
        _choice("multigrid", self.multigrid, MULTIGRID)
        _choice("multigrid_lr_scaling", self.multigrid_lr_scaling, MULTIGRID_LR_SCALINGS)
        _choice("multigrid_short_cycle", self.multigrid_short_cycle, SHORT_CYCLE_RULES)
        _choice("multigrid_batch", self.multigrid_batch, BATCH_RULES)
        _choice("multigrid_stride", self.multigrid_stride, STRIDE_RULES)
        for name in ("epochs", "batch_size", "val_every", "log_every", "accumulate"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.precise_bn_batches < -1:
            raise UsageError(
                f"precise_bn_batches must be -1 (auto), 0 (off) or a number of batches, got {self.precise_bn_batches}"
            )
        for name in ("frames", "size", "stride", "num_classes", "threads", "noise_scale_every"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.workers < -1:
            raise UsageError(f"workers must be >= 0 (or -1 for one per core), got {self.workers}")
        if self.lr <= 0:
            raise UsageError(f"lr must be positive, got {self.lr}")
        for name in ("weight_decay", "clip_grad", "warmup_epochs", "min_lr", "width_mult", "critical_batch"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("label_smoothing", "dropout", "momentum"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UsageError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 < self.warmup_start_factor <= 1.0:
            raise UsageError(f"warmup_start_factor must be in (0, 1], got {self.warmup_start_factor}")
        if self.width_mult == 0:
            raise UsageError("width_mult must be positive")
        if self.backbone_lr_mult <= 0:
            raise UsageError(
                f"backbone_lr_mult must be positive (use freeze=backbone to stop training it), "
                f"got {self.backbone_lr_mult}"
            )
        if self.scale_range and (len(self.scale_range) != 2 or not 0 < self.scale_range[0] <= self.scale_range[1]):
            raise UsageError(f"scale_range must be [min, max] short sides with 0 < min <= max, got {self.scale_range}")
        if self.freeze and self.multigrid != "none":
            raise UsageError("freeze and multigrid together are not supported (multigrid replaces BatchNorm layers)")
        Cadence.parse(self.checkpoint_every)
        if sorted(self.lr_steps) != list(self.lr_steps):
            raise UsageError(f"lr_steps must be increasing, got {self.lr_steps}")

    @property
    def step_batch_size(self) -> int:
        """Clips per optimizer step on each process: ``batch_size`` x ``accumulate``."""
        return self.batch_size * self.accumulate

    def resolved_precise_bn(self) -> int:
        """Batches for precise BatchNorm statistics: ``-1`` is 20 with multigrid and 0 otherwise."""
        if self.precise_bn_batches >= 0:
            return self.precise_bn_batches
        return PRECISE_BN_MULTIGRID if self.multigrid != "none" else 0

    def resolved_lr_scaling(self) -> str:
        """The multigrid LR scaling rule: ``auto`` is linear for SGD and sqrt for AdamW."""
        if self.multigrid_lr_scaling != "auto":
            return self.multigrid_lr_scaling
        return "linear" if self.optimizer == "sgd" else "sqrt"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from a mapping (a checkpoint's or a TOML file's); unknown keys are errors."""
        return apply_values(cls(), values, source="config")


def config_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        shown = ", ".join(repr(a) if a == "" else a for a in allowed)
        raise UsageError(f"{name}={value!r} is not one of {shown}")


def _unknown_key(key: str, source: str) -> UsageError:
    close = difflib.get_close_matches(key, config_keys(), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known keys: {', '.join(config_keys())}"
    return UsageError(f"{source}: unknown config key {key!r}{hint}")


def _field_types() -> dict[str, object]:
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)}


def _coerce(key: str, value, kind, source: str):
    """Check/convert a TOML value (already typed) to the field's type."""
    bad = UsageError(f"{source}: {key} expects {_type_name(kind)}, got {value!r}")
    if key == "channels_last" and _channels_last_flag(value) is not None:
        return _channels_last_flag(value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad
    if kind is str:
        if isinstance(value, str):
            return value
        raise bad
    if typing.get_origin(kind) is list:
        if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return list(value)
        raise bad
    raise bad  # pragma: no cover - every field type is handled above


def _channels_last_flag(value) -> str | None:
    """``on``/``off`` for the true/false that configs, checkpoints and ``--set`` held when channels_last was a
    flag (a bool, or its text); None for anything else."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        value = value.strip().lower() == "true"
    if isinstance(value, bool):
        return "on" if value else "off"
    return None


def _type_name(kind) -> str:
    if typing.get_origin(kind) is list:
        return "a list of integers (e.g. [20, 30])"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}[kind]


def parse_value(key: str, text: str, source: str = "--set"):
    """Parse the text of ``--set key=value`` into the field's type."""
    types = _field_types()
    if key not in types:
        raise _unknown_key(key, source)
    kind = types[key]
    text = text.strip()
    if key == "channels_last" and _channels_last_flag(text) is not None:
        return _channels_last_flag(text)
    if kind is str:
        return text
    if kind is bool:
        low = text.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise UsageError(f"{source}: {key} expects true/false, got {text!r}")
    if typing.get_origin(kind) is list:
        inner = text.strip("[]").strip()
        try:
            return [int(v) for v in inner.split(",") if v.strip()] if inner else []
        except ValueError:
            raise UsageError(f"{source}: {key} expects {_type_name(kind)}, got {text!r}") from None
    try:
        return kind(text)
    except ValueError:
        raise UsageError(f"{source}: {key} expects {_type_name(kind)}, got {text!r}") from None


def apply_values(cfg: TrainConfig, values: dict, source: str) -> TrainConfig:
    """A copy of ``cfg`` with ``values`` (typed, e.g. from TOML) applied; unknown keys are errors."""
    types = _field_types()
    changes = {}
    for key, value in values.items():
        if key not in types:
            raise _unknown_key(key, source)
        changes[key] = _coerce(key, value, types[key], source)
    return dataclasses.replace(cfg, **changes)


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply ``["key=value", ...]`` from ``--set``."""
    changes = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set expects key=value, got {item!r}")
        changes[key] = parse_value(key, text)
    return dataclasses.replace(cfg, **changes)


def read_config_file(path: str | Path) -> dict:
    """The key/value pairs of a ``.toml`` (or ``.json``) file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: config file not found")
    try:
        if path.suffix == ".json":
            values = json.loads(path.read_text(encoding="utf-8"))
        else:
            with open(path, "rb") as f:
                values = tomllib.load(f)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {first_line(exc)}"
        ) from None
    nested = [k for k, v in values.items() if isinstance(v, dict)]
    if nested:
        raise UsageError(f"{path}: tables are not used; write plain 'key = value' lines (found [{nested[0]}])")
    return values


def load_config(
    config_file: str | Path | None = None,
    overrides: list[str] = (),
    base: TrainConfig | None = None,
    recipe: str | None = None,
    **options,
) -> TrainConfig:
    """``base`` (defaults, or a resumed run's config) <- recipe <- config file <- options given (not None)
    <- ``--set``; then the recipe scaled to the batch size and epochs (:mod:`vidact.train.recipes`).

    ``recipe``: None or ``none`` (no recipe), ``auto`` (the architecture's recipe, if it has one) or a name.
    """
    from vidact.train.recipes import choose_recipe, world_size_from_env

    file_values = read_config_file(config_file) if config_file else {}
    given = {k: v for k, v in options.items() if v is not None}
    set_keys = {item.partition("=")[0].strip() for item in overrides}

    def layered(start: TrainConfig) -> TrainConfig:
        cfg = apply_values(start, file_values, source=str(config_file)) if config_file else start
        cfg = apply_values(cfg, given, source="option")
        return apply_overrides(cfg, list(overrides))

    base = base or TrainConfig()
    cfg = layered(base)
    chosen = choose_recipe(recipe, cfg.arch)
    if chosen is not None:
        explicit = set(file_values) | set(given) | set_keys
        if "arch" in explicit and cfg.arch != chosen.arch and recipe not in (None, "auto"):
            raise UsageError(f"recipe {chosen.name} is for arch {chosen.arch}, not {cfg.arch}")
        cfg = layered(apply_values(base, chosen.config, source=f"recipe {chosen.name}"))
        cfg = chosen.scaled(cfg, explicit, world_size_from_env())
    return cfg.validate()


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def to_toml(cfg: TrainConfig) -> str:
    """The config as TOML; :func:`read_config_file` reads it back unchanged."""
    return "".join(f"{k} = {_toml_value(v)}\n" for k, v in cfg.to_dict().items())
