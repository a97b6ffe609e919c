"""Fine-tuning controls: frozen parts of a model and a separate learning rate for the backbone.

``freeze="backbone"`` freezes every parameter except the classifier (the tensors whose shape
depends on the class count); ``freeze="stem,res2"`` freezes the named modules (top-level names, or
dotted paths such as ``features.conv1a``). Frozen parameters stop requiring gradients and the
BatchNorm layers inside the frozen part stay in eval mode whatever ``model.train()`` says (a forward
pre-hook), so their running statistics stay bit for bit too. ``backbone_lr_mult`` puts the
backbone's parameters in their own optimizer groups at ``lr * mult`` (``lr_scale`` of
:func:`vidact.train.lr.set_lr`); the classifier trains at ``lr``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from vidact.errors import UsageError

if TYPE_CHECKING:
    from vidact.weights.pretrained import PretrainedReport

BACKBONE = "backbone"


@dataclass
class FreezeReport:
    frozen_modules: list[str] = field(default_factory=list)
    frozen_params: int = 0  # tensors
    frozen_numel: int = 0
    trainable_numel: int = 0
    eval_norms: int = 0  # BatchNorm layers kept in eval mode

    def to_dict(self) -> dict:
        return asdict(self)


def parse_freeze(spec: str) -> list[str]:
    return [s.strip() for s in spec.split(",") if s.strip()]


def module_choices(model: nn.Module) -> list[str]:
    """Names ``--freeze`` accepts: ``backbone`` and the model's top-level modules."""
    return [BACKBONE, *(name for name, _ in model.named_children())]


def _keep_eval(module: nn.Module, args) -> None:
    module.training = False


def _prefixes(model: nn.Module, names: list[str], head: list[str]) -> list[str]:
    if names == [BACKBONE]:
        return [BACKBONE]
    if BACKBONE in names:
        raise UsageError("--freeze backbone cannot be combined with module names")
    modules = dict(model.named_modules())
    for name in names:
        if name not in modules or name == "":
            raise UsageError(f"--freeze {name!r}: no such module; choose from {', '.join(module_choices(model))}")
    return names


def _under(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def freeze(model: nn.Module, spec: str, head: list[str]) -> FreezeReport:
    """Freeze ``spec`` (``backbone`` or module names) of ``model``; ``head`` are the classifier's keys."""
    names = parse_freeze(spec)
    report = FreezeReport()
    if not names:
        report.trainable_numel = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return report
    prefixes = _prefixes(model, names, head)
    head_set = set(head)
    backbone = prefixes == [BACKBONE]

    def frozen(name: str) -> bool:
        return name not in head_set if backbone else _under(name, prefixes)

    for name, p in model.named_parameters():
        if frozen(name):
            p.requires_grad_(False)
            report.frozen_params += 1
            report.frozen_numel += p.numel()
        elif p.requires_grad:
            report.trainable_numel += p.numel()
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._NormBase):
            own = [f"{name}.{k}" for k, _ in m.named_parameters(recurse=False)]
            if (own and all(frozen(k) for k in own)) or (not own and frozen(f"{name}.running_mean")):
                m.register_forward_pre_hook(_keep_eval)
                m.vidact_frozen = True  # precise BN leaves it alone too
                m.eval()
                report.eval_norms += 1
    report.frozen_modules = ["all but the classifier"] if backbone else prefixes
    if report.trainable_numel == 0:
        raise UsageError(f"--freeze {spec}: nothing left to train")
    return report


def param_groups(
    model: nn.Module, *, lr: float, weight_decay: float, head: list[str], backbone_lr_mult: float = 1.0
) -> list[dict]:
    """Optimizer groups: decay / no decay (biases, norms), and with ``backbone_lr_mult != 1`` the
    backbone apart from the classifier at ``lr * backbone_lr_mult`` (``lr_scale``)."""
    head_set = set(head)
    split = backbone_lr_mult != 1.0
    buckets: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        part = "head" if (split and name in head_set) else ("backbone" if split else "all")
        buckets.setdefault((part, p.ndim > 1), []).append(p)
    groups = []
    for part in ("all",) if not split else ("head", "backbone"):
        scale = backbone_lr_mult if part == "backbone" else 1.0
        for decay in (True, False):
            params = buckets.get((part, decay), [])
            if not params and split:
                continue
            group = {"params": params, "weight_decay": weight_decay if decay else 0.0, "lr": lr * scale}
            if split:
                group.update(lr_scale=scale, name=f"{part}{'' if decay else '_no_decay'}")
            groups.append(group)
    return groups


@dataclass
class Finetuning:
    """What :func:`prepare_finetuning` did to a fresh model: its classifier keys, weights loaded, parts frozen."""

    head: list[str]
    freeze: FreezeReport
    pretrained: PretrainedReport | None = None

    def lines(self) -> list[str]:
        out = [self.pretrained.summary()] if self.pretrained is not None else []
        if self.freeze.frozen_params:
            out.append(
                f"frozen: {', '.join(self.freeze.frozen_modules)} ({self.freeze.frozen_numel / 1e6:.2f} M "
                f"parameters, {self.freeze.eval_norms} BatchNorm layers in eval mode); "
                f"training {self.freeze.trainable_numel / 1e6:.3f} M"
            )
        return out


def prepare_finetuning(
    model: nn.Module, cfg, rebuild, *, load_weights: bool = True, progress: bool | None = None
) -> Finetuning:
    """``cfg.pretrained`` loaded into ``model`` (when ``load_weights``), then ``cfg.freeze`` applied."""
    from vidact.weights.pretrained import classifier_keys, load_pretrained

    needed = bool(cfg.pretrained or cfg.freeze) or cfg.backbone_lr_mult != 1.0
    head = classifier_keys(model, rebuild) if needed else []
    report = None
    if cfg.pretrained and load_weights:
        report = load_pretrained(model, cfg.pretrained, cfg.arch, rebuild, progress=progress)
    return Finetuning(head, freeze(model, cfg.freeze, head), report)
