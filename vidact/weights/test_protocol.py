"""Which test protocol (:mod:`vidact.data.protocols`) a checkpoint is tested with (``vidact eval``, ``vidact predict``).

``auto`` takes, in order: the protocol the checkpoint records (``config.test_protocol``, written by
``vidact models convert`` from the publisher's zoo row), the publishers' protocol for a run started
from a recipe (the recipes are PySlowFast's configs), else vidact's own single view. A publisher
protocol tests at the crop the architecture's zoo row was published at, scaled by the checkpoint's
training crop against the architecture's default (X3D-XS trained at 160 tests at 182).
"""

from __future__ import annotations

from vidact.data.protocols import PROTOCOLS, PUBLISHERS, PYSLOWFAST, VIDACT, EvalProtocol, make_protocol
from vidact.errors import UsageError

AUTO = "auto"
CHOICES = (AUTO, *PROTOCOLS)


def publisher_crop(arch: str, name: str, train_size: int) -> int:
    """The test crop of ``arch`` under protocol ``name`` for a model trained at ``train_size``."""
    from vidact.models import get_entry
    from vidact.weights.zoo import published_test

    row = published_test(arch, name) or published_test(arch)
    if row is None:
        return train_size
    return max(train_size, round(row.test_crop * train_size / get_entry(arch).input.size))


def checkpoint_protocol(
    ckpt: dict,
    train_size: int,
    name: str = AUTO,
    *,
    clips: int | None = None,
    crops: int | None = None,
    crop_size: int = 0,
    short_side: int = 0,
) -> tuple[EvalProtocol, str]:
    """The protocol to test ``ckpt`` with, and where it came from (given, checkpoint, recipe, default)."""
    if name not in CHOICES:
        raise UsageError(f"unknown test protocol {name!r}; choose {', '.join(CHOICES)}")
    cfg = ckpt.get("config", {})
    recorded = cfg.get("test_protocol") or {}
    origin = "given"
    if name == AUTO:
        if recorded.get("name") in PROTOCOLS:
            name, origin = recorded["name"], "checkpoint"
        elif cfg.get("recipe"):
            name, origin = PYSLOWFAST, "recipe"
        else:
            name, origin = VIDACT, "default"
    if not crop_size and name in PUBLISHERS:
        if recorded.get("name") == name and recorded.get("crop_size"):
            crop_size, short_side = recorded["crop_size"], short_side or recorded.get("short_side", 0)
        else:
            crop_size = publisher_crop(ckpt["arch"], name, train_size)
    return make_protocol(name, clips=clips, crops=crops, crop_size=crop_size, short_side=short_side), origin
