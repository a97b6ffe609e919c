"""PySlowFast's Caffe2 ``.pkl`` checkpoints: a safe reader and blob names -> PySlowFast PyTorch names.

The Kinetics SlowFast models in PySlowFast's zoo are Caffe2 pickles ``{"blobs": {name: ndarray}}``.
:func:`read_caffe2_pickle` unpickles them with an allow-list (numpy arrays, dtypes and plain
containers only), so a file carrying code is refused. :func:`caffe2_to_pyslowfast` renames the blobs
to the keys PySlowFast's PyTorch models use (``s2.pathway0_res1.branch2.a_bn.weight``), which the
converter in :mod:`vidact.weights.convert` maps onto vidact; solver blobs (``*_momentum``, ``lr``,
iteration counters) are dropped. BatchNorm's ``num_batches_tracked`` counters are not in the file and
are not invented: loaders report them as left at their initial value.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import torch

from vidact.errors import CheckpointError, first_line

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
}
_BN = {"s": "weight", "b": "bias", "rm": "running_mean", "riv": "running_var"}
_PARAM = {"w": "weight", "b": "bias"}
_SOLVER = re.compile(r"(_momentum|_grad)$|^(lr|model_iter|.*_iter)$")


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")


def read_caffe2_pickle(path: str | Path) -> dict[str, np.ndarray]:
    """The ``blobs`` of a Caffe2 pickle, unpickled with an allow-list of numpy types."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as exc:
        raise CheckpointError(f"{path}: not a readable Caffe2 pickle ({first_line(exc)})") from None
    blobs = obj.get("blobs", obj) if isinstance(obj, dict) else None
    if not isinstance(blobs, dict) or not any(isinstance(v, np.ndarray) for v in blobs.values()):
        raise CheckpointError(f"{path}: a pickle without Caffe2 blobs (expected {{'blobs': {{name: array}}}})")
    return {k: v for k, v in blobs.items() if isinstance(v, np.ndarray)}


def _tail(suffix: str, bn: bool) -> str | None:
    return (_BN if bn else _PARAM).get(suffix)


def caffe2_name(name: str) -> str | None:
    """The PySlowFast PyTorch key of a Caffe2 blob, or None for blobs that are not model weights."""
    if _SOLVER.search(name):
        return None
    fast = name.startswith("t_")
    body = name[2:] if fast else name
    way = "pathway1" if fast else "pathway0"
    patterns = [
        # lateral (fast -> slow) connections, named after the fast layer they read
        (r"pool1_subsample_bn_(\w+)", lambda m: ("s1_fuse.bn", m[1], True)),
        (r"pool1_subsample_(\w+)", lambda m: ("s1_fuse.conv_f2s", m[1], False)),
        (r"res(\d+)_\d+_branch2c_bn_subsample_bn_(\w+)", lambda m: (f"s{m[1]}_fuse.bn", m[2], True)),
        (r"res(\d+)_\d+_branch2c_bn_subsample_(\w+)", lambda m: (f"s{m[1]}_fuse.conv_f2s", m[2], False)),
        # stems
        (r"res_conv1_bn_(\w+)", lambda m: (f"s1.{way}_stem.bn", m[1], True)),
        (r"conv1_(\w+)", lambda m: (f"s1.{way}_stem.conv", m[1], False)),
        # residual blocks: res<stage>_<block>_branch2<a|b|c>[_bn]_<x>, res<stage>_<block>_branch1[_bn]_<x>
        (
            r"res(\d+)_(\d+)_branch2([abc])_bn_(\w+)",
            lambda m: (f"s{m[1]}.{way}_res{m[2]}.branch2.{m[3]}_bn", m[4], True),
        ),
        (r"res(\d+)_(\d+)_branch2([abc])_(\w+)", lambda m: (f"s{m[1]}.{way}_res{m[2]}.branch2.{m[3]}", m[4], False)),
        (r"res(\d+)_(\d+)_branch1_bn_(\w+)", lambda m: (f"s{m[1]}.{way}_res{m[2]}.branch1_bn", m[3], True)),
        (r"res(\d+)_(\d+)_branch1_(\w+)", lambda m: (f"s{m[1]}.{way}_res{m[2]}.branch1", m[3], False)),
    ]
    if not fast:
        patterns.append((r"pred_(\w+)", lambda m: ("head.projection", m[1], False)))
    for pattern, build in patterns:
        m = re.fullmatch(pattern, body)
        if m:
            module, suffix, bn = build(m)
            tail = _tail(suffix, bn)
            return f"{module}.{tail}" if tail else None
    return None


def caffe2_to_pyslowfast(blobs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A PySlowFast-named state dict from Caffe2 blobs (unknown blobs dropped; no BN counters)."""
    state: dict[str, torch.Tensor] = {}
    for name, value in blobs.items():
        key = caffe2_name(name)
        if key is not None:
            state[key] = torch.from_numpy(np.ascontiguousarray(value)).float()
    if not state:
        raise CheckpointError("no Caffe2 blob has a SlowFast weight name (e.g. 'res2_0_branch2a_w')")
    return state
