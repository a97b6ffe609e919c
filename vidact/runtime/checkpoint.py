"""Checkpoints: atomic saves, ``weights_only`` loads, RNG state capture.

A checkpoint is a dict of tensors and primitives only (the config as a dict, RNG states
as tensors and lists), so :func:`torch.load` with ``weights_only=True`` reads it and a file
holding pickled code is refused. Keys: ``format``, ``version``, ``arch``, ``classes``,
``config``, ``input``, ``model``, ``optimizer``, ``scaler``, ``schedule``, ``rng``,
``epoch`` (finished epochs), ``batch_in_epoch`` (batches done in the running epoch),
``iteration`` (global step), ``best_top1``, ``metrics``.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vidact.errors import CheckpointError
from vidact.io.atomic import atomic_torch_save
from vidact.io.torchfile import load_weights_only
from vidact.runtime.wrap import unwrap_model

FORMAT = "vidact-checkpoint"
VERSION = 1


def capture_rng_state() -> dict:
    """torch, numpy, python (and CUDA) generator states as tensors and lists."""
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "state": list(py_state), "gauss_next": py_gauss},
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict) -> None:
    """Undo :func:`capture_rng_state`: every generator continues where it was saved."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, **fields) -> None:
    """Write ``fields`` plus the format tag atomically (a killed save leaves the old file)."""
    atomic_torch_save({"format": FORMAT, "version": VERSION, **fields}, path)


def load_checkpoint(path: str | Path) -> dict:
    """Read a vidact checkpoint with ``weights_only=True``; every failure is one CheckpointError line."""
    path = Path(path)
    ckpt = load_weights_only(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a vidact checkpoint (no '{FORMAT}' tag)")
    for key in ("arch", "classes", "config", "model"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint lacks '{key}'")
    return ckpt


def check_arch(ckpt: dict, arch: str, path: str | Path) -> None:
    """A checkpoint of another architecture is an error, never a silent partial load."""
    if ckpt["arch"] != arch:
        raise CheckpointError(f"{path}: checkpoint is for arch {ckpt['arch']!r}, not {arch!r}")


def check_classes(ckpt: dict, classes: list[str], path: str | Path, data: str | Path) -> None:
    """The data's classes must be the checkpoint's (same count; names when both are known)."""
    if len(ckpt["classes"]) != len(classes):
        raise CheckpointError(f"{path}: checkpoint has {len(ckpt['classes'])} classes but {data} has {len(classes)}")
    if list(ckpt["classes"]) != list(classes):
        first = next(i for i, (a, b) in enumerate(zip(ckpt["classes"], classes)) if a != b)
        raise CheckpointError(
            f"{path}: class {first} is {ckpt['classes'][first]!r} in the checkpoint but {classes[first]!r} in {data}"
        )


def load_model_state(model: nn.Module, state: dict, path: str | Path) -> None:
    """Strict ``load_state_dict`` whose failure names the first mismatched key in one line."""
    target = unwrap_model(model)
    own = target.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        what = f"missing key {missing[0]!r}" if missing else f"unexpected key {unexpected[0]!r}"
        raise CheckpointError(
            f"{path}: weights do not fit the model ({what}; {len(missing)} missing, {len(unexpected)} unexpected)"
        )
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{path}: weights do not fit the model ({k!r} has shape "
                f"{tuple(state[k].shape)} in the checkpoint, {tuple(v.shape)} in the model)"
            )
    target.load_state_dict(state)
