"""Every registered architecture has one head contract.

That is: ``forward_features``, ``forward_head(x, pre_logits)`` and ``num_features``.
"""

from __future__ import annotations

import pytest
import torch

from vidact.models import create_model, get_entry, model_names
from vidact.runtime.build import builder_options


def _small(arch: str):
    entry = get_entry(arch)
    kwargs = {"num_classes": 5, "dropout": 0.0}
    if "width_mult" in (builder_options(entry.builder) or ()):
        kwargs["width_mult"] = 0.125
    frames = min(entry.input.frames, 8 if entry.family != "slowfast" else 32)
    return create_model(arch, **kwargs).eval(), entry.example_input(2, frames, 64 if entry.family != "karpathy" else 89)


@pytest.mark.parametrize(
    "arch",
    [a for a in model_names() if not a.startswith("i3d") and not a.startswith("x3d-") and not a.startswith("slowfast")]
    + ["x3d-xs", "i3d", "i3d-two-stream"],
)
def test_head_contract(arch, one_thread):
    torch.manual_seed(0)
    model, x = _small(arch)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model.forward_head(features)
        pooled = model.forward_head(features, pre_logits=True)
        assert torch.equal(logits, model(x))
    assert logits.shape == (2, 5)
    assert pooled.shape == (2, model.num_features)
    assert isinstance(model.num_features, int) and model.num_features > 0


def test_slowfast_head_contract(one_thread):
    model = create_model("slowfast-r50-8x8", num_classes=5, dropout=0.0).eval()
    x = get_entry("slowfast-r50-8x8").example_input(1, 32, 64)
    with torch.no_grad():
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
    assert pooled.shape == (1, model.num_features) == (1, 2304)
