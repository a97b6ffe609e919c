"""Per-architecture training recipes: TOML files shipped in ``vidact/recipes/``.

A recipe has a ``[recipe]`` table (name, arch, the published accuracy it aims at, the batch size its
learning rate is given for, test views) and a ``[config]`` table of :class:`TrainConfig` keys. When
``vidact train --arch NAME`` names an architecture with a recipe (``auto = false`` recipes excepted),
that recipe sits between the defaults and everything the user gives, and is scaled to the run:

- the learning rate linearly to the global batch (``batch_size`` x ``accumulate`` x processes) unless ``lr``
  is given;
- with other ``epochs`` than the recipe's, ``warmup_epochs`` and ``lr_steps`` in proportion (unless given);
- with another crop ``size``, the short-side jitter ``scale_range`` in proportion (unless given).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from importlib import resources

import tomllib

from vidact.errors import UsageError, first_line
from vidact.runtime.distributed import launch_env

AUTO, NONE = "auto", "none"


@dataclass(frozen=True)
class Recipe:
    name: str
    arch: str
    description: str
    source: str
    aims_at: str
    reference_batch_size: int
    config: dict = field(default_factory=dict)
    aims_at_top1: float | None = None
    test_clips: int = 10
    test_crops: int = 3
    test_size: int = 0
    auto: bool = True
    notes: str = ""
    reference_train_clips: int = 0  # the training set the recipe was tuned on (0: not given)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def scaled(self, cfg, given: set[str], world_size: int = 1):
        """``cfg`` (the recipe's config with the user's values on top) scaled to its batch and epochs."""
        changes: dict = {"recipe": self.name}
        if "lr" not in given and "lr" in self.config:
            changes["lr"] = self.config["lr"] * cfg.step_batch_size * world_size / self.reference_batch_size
        jitter, crop = self.config.get("scale_range"), self.config.get("size")
        if jitter and crop and cfg.size and cfg.size != crop and "scale_range" not in given:
            changes["scale_range"] = [max(cfg.size, round(s * cfg.size / crop)) for s in jitter]
        epochs = self.config.get("epochs")
        if epochs and cfg.epochs != epochs:
            ratio = cfg.epochs / epochs
            if "warmup_epochs" not in given and "warmup_epochs" in self.config:
                changes["warmup_epochs"] = self.config["warmup_epochs"] * ratio
            if "lr_steps" not in given and self.config.get("lr_steps"):
                changes["lr_steps"] = [max(1, round(s * ratio)) for s in self.config["lr_steps"]]
        return dataclasses.replace(cfg, **changes)

    def planned_steps(self) -> int | None:
        """Optimizer steps the recipe was tuned for: its epochs over its training set at its batch size."""
        epochs = self.config.get("epochs")
        if not epochs or not self.reference_train_clips:
            return None
        return int(epochs * self.reference_train_clips / self.reference_batch_size)

    def steps_warning(self, cfg, train_clips: int, world_size: int = 1, far: float = 10.0) -> str | None:
        """One warning line when this run's optimizer steps are ``far`` or more times fewer (or more) than the
        recipe's; None otherwise."""
        planned = self.planned_steps()
        steps = cfg.epochs * max(1, train_clips // (cfg.batch_size * world_size))
        if planned is None or 1 / far < planned / steps < far:
            return None
        ratio = planned / steps
        relation = f"{ratio:.0f}x fewer" if ratio > 1 else f"{1 / ratio:.0f}x more"
        remedy = "" if cfg.lr_finder else "; --lr auto measures an LR for this run"
        return (
            f"warning: recipe {self.name} was tuned for {planned:,} optimizer steps ({self.config['epochs']} "
            f"epochs of {self.reference_train_clips:,} clips at batch {self.reference_batch_size}); this run makes "
            f"{steps:,}, {relation}: its LR and warm-up may not fit{remedy}"
        )

    def summary(self, cfg) -> str:
        return (
            f"recipe {self.name} ({self.source}): lr {cfg.lr:.4g} at batch {cfg.step_batch_size} "
            f"(recipe {self.config.get('lr')} at {self.reference_batch_size}), {cfg.epochs} epochs, "
            f"warm-up {cfg.warmup_epochs:g}; aims at {self.aims_at}"
        )


def _files() -> dict[str, object]:
    folder = resources.files("vidact") / "recipes"
    return {p.name.removesuffix(".toml"): p for p in folder.iterdir() if p.name.endswith(".toml")}


def _parse(name: str, text: str) -> Recipe:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"recipe {name}: not valid TOML: {first_line(exc)}") from None
    meta, config = data.get("recipe"), data.get("config")
    if not isinstance(meta, dict) or not isinstance(config, dict):
        raise UsageError(f"recipe {name}: needs a [recipe] and a [config] table")
    known = {f.name for f in dataclasses.fields(Recipe)} - {"config"}
    unknown = sorted(set(meta) - known)
    if unknown:
        raise UsageError(f"recipe {name}: unknown [recipe] key {unknown[0]!r}")
    if meta.get("name") != name:
        raise UsageError(f"recipe {name}: [recipe] name is {meta.get('name')!r}, not the file's name")
    if config.get("arch") != meta.get("arch"):
        raise UsageError(f"recipe {name}: [config] arch {config.get('arch')!r} differs from [recipe] arch")
    try:
        return Recipe(config=config, **meta)
    except TypeError as exc:
        raise UsageError(f"recipe {name}: {first_line(exc)}") from None


def recipe_names() -> list[str]:
    return sorted(_files())


def get_recipe(name: str) -> Recipe:
    files = _files()
    if name not in files:
        close = difflib.get_close_matches(name, list(files), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(files))}"
        raise UsageError(f"unknown recipe {name!r}; {hint}")
    return _parse(name, files[name].read_text(encoding="utf-8"))


def all_recipes() -> list[Recipe]:
    return [get_recipe(n) for n in recipe_names()]


def recipe_for_arch(arch: str) -> Recipe | None:
    """The recipe ``vidact train --arch ARCH`` uses by default, or None."""
    key = arch.strip().lower().replace("_", "-")
    found = [r for r in all_recipes() if r.arch == key and r.auto]
    return found[0] if found else None


def choose_recipe(choice: str | None, arch: str) -> Recipe | None:
    """``auto`` -> the arch's recipe (or None), ``none`` -> None, a name -> that recipe (same arch)."""
    if choice is None or choice == NONE:
        return None
    if choice == AUTO:
        return recipe_for_arch(arch)
    return get_recipe(choice)


def world_size_from_env() -> int:
    """Processes of a torchrun launch (the global batch is batch_size x accumulate x this)."""
    return launch_env().world_size
