"""A checkpoint ready to score clips: its model, input, class names and test protocol."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vidact.data import views
from vidact.data.protocols import EvalProtocol
from vidact.errors import UsageError
from vidact.runtime.build import ResolvedInput, model_from_checkpoint
from vidact.runtime.checkpoint import load_checkpoint
from vidact.runtime.device import select_device


def top_classes(probs: np.ndarray, classes: list[str], k: int) -> list[dict]:
    order = np.argsort(-probs, kind="stable")[: min(k, len(classes))]
    return [{"label": int(i), "class": classes[i], "prob": float(probs[i])} for i in order]


@dataclass
class Predictor:
    """A checkpoint's model, in eval mode on its device, with the input it expects, its class names and
    the test protocol that places its clips."""

    checkpoint: Path
    arch: str
    classes: list[str]
    model: torch.nn.Module
    inp: ResolvedInput
    device: torch.device
    protocol: EvalProtocol

    def view(self) -> views.SpatialParams:
        """The single centre view a clip is scaled and cropped to."""
        return self.protocol.view(0, 1, self.inp.size)


def load_predictor(checkpoint: str | Path, device: str = "auto", protocol: str = "auto") -> Predictor:
    from vidact.weights.test_protocol import checkpoint_protocol

    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint)
    dev = select_device(device)
    model, inp = model_from_checkpoint(ckpt, checkpoint, dev)
    if inp.modality != "rgb":
        raise UsageError(
            f"{checkpoint}: a {inp.modality} model needs precomputed flow; "
            f"predict reads RGB video files (use vidact eval on a flow data set)"
        )
    chosen, _ = checkpoint_protocol(ckpt, inp.size, protocol)
    return Predictor(checkpoint, ckpt["arch"], list(ckpt["classes"]), model, inp, dev, chosen)
