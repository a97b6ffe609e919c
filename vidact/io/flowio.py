"""Optical flow on disk: 8-bit JPEG pairs (denseflow layout) or one float16 ``flow.npz``.

Layout written by vidact (``flow.json`` records every choice)::

    flow_x_00001.jpg, flow_y_00001.jpg, ...   flow k (1-based) goes from frame k to k+1
    flow.npz                                  key "flow": float16, (N, 2, H, W), in pixels
    flow.json                                 format, bound, index_base, prefix, digits, ...

JPEG values are ``q = round(255 * (clip(f, -B, B) + B) / (2B))`` so zero flow is 128.
Readers also accept denseflow's 0-based naming and the ``x_00001.jpg`` prefix when no
manifest says otherwise. Flow indices given to :func:`read_flow` are always 0-based.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vidact.errors import VidactError, first_line
from vidact.io.atomic import atomic_path, atomic_write_text

MANIFEST_FILE = "flow.json"
NPZ_FILE = "flow.npz"
DEFAULT_BOUND = 20.0
DEFAULT_PREFIX = "flow_"
DEFAULT_DIGITS = 5
DEFAULT_QUALITY = 95

_JPG_NAME = re.compile(r"^(?P<prefix>.*?)(?P<axis>[xy])_(?P<index>\d+)\.(?P<ext>jpe?g|png)$")


# --------------------------------------------------------------------------- quantisation
def quantize(flow: np.ndarray, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """Map flow in pixels to uint8: ``round(255 * (clip(f, -B, B) + B) / (2B))``; zero -> 128."""
    if bound <= 0:
        raise ValueError(f"bound must be positive, got {bound}")
    f = np.clip(np.asarray(flow, dtype=np.float64), -bound, bound)
    # (f + B) * 255 / (2B) + 0.5 rearranged so that zero flow lands exactly on 128 for every bound
    q = np.floor(f * (127.5 / bound) + 128.0)  # round half up, as cvRound on .5
    return np.clip(q, 0, 255).astype(np.uint8)


def dequantize(q: np.ndarray, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """Inverse of :func:`quantize` (float32 pixels); error at most ``bound / 255`` inside the bound."""
    return np.asarray(q, dtype=np.float32) * (2.0 * bound / 255.0) - bound


# --------------------------------------------------------------------------- manifest
def write_manifest(folder: str | Path, manifest: dict) -> None:
    """Write ``folder/flow.json`` atomically."""
    atomic_write_text(Path(folder) / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_manifest(folder: str | Path) -> dict | None:
    """The ``flow.json`` of ``folder``, or None when there is none."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise VidactError(f"{path}: unreadable flow manifest: {first_line(exc)}") from None


# --------------------------------------------------------------------------- writers
def _jpg_name(prefix: str, axis: str, index: int, digits: int = DEFAULT_DIGITS, ext: str = "jpg") -> str:
    return f"{prefix}{axis}_{index:0{digits}d}.{ext}"


def _check_flows(flows: np.ndarray) -> np.ndarray:
    flows = np.asarray(flows)
    if flows.ndim != 4 or flows.shape[1] != 2:
        raise ValueError(f"flows must have shape (N, 2, H, W), got {tuple(flows.shape)}")
    return flows


def write_flow_jpgs(
    folder: str | Path,
    flows: np.ndarray,
    bound: float = DEFAULT_BOUND,
    quality: int = DEFAULT_QUALITY,
    start: int = 1,
    prefix: str = DEFAULT_PREFIX,
) -> int:
    """Write ``flows`` (N, 2, H, W) as ``{prefix}x_00001.jpg`` / ``{prefix}y_00001.jpg`` pairs.

    Flow k is numbered ``start + k``; returns the number of pairs written. uint8 ``flows`` are
    taken as already quantised with :func:`quantize` (the GPU extractor quantises on the device).
    """
    import cv2

    flows = _check_flows(flows)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
    for k, flow in enumerate(flows):
        for axis, component in zip("xy", flow):
            path = folder / _jpg_name(prefix, axis, start + k)
            # encode in memory and write from Python: cv2.imwrite crashes on non-UTF-8 paths
            q = component if component.dtype == np.uint8 else quantize(component, bound)
            ok, buf = cv2.imencode(f".{path.suffix.lstrip('.') or 'jpg'}", q, params)
            if not ok:
                raise VidactError(f"{path}: could not write JPEG")
            path.write_bytes(buf.tobytes())
    return len(flows)


def write_flow_npz(folder: str | Path, flows: np.ndarray) -> Path:
    """Write ``flows`` (N, 2, H, W) losslessly-ish as float16 into ``folder/flow.npz``."""
    flows = _check_flows(flows)
    dest = Path(folder) / NPZ_FILE
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, flow=flows.astype(np.float16))
    return dest


# --------------------------------------------------------------------------- readers
def _detect_jpg_layout(folder: Path) -> dict:
    """Guess prefix, index base, digits and extension of an x/y JPEG folder without a manifest."""
    found: dict[str, list[int]] = {}
    sample: dict[str, tuple[int, str]] = {}
    for path in folder.iterdir():
        m = _JPG_NAME.match(path.name)
        if m is None or m["axis"] != "x":
            continue
        found.setdefault(m["prefix"], []).append(int(m["index"]))
        sample[m["prefix"]] = (len(m["index"]), m["ext"])
    if not found:
        raise VidactError(f"{folder}: no flow files (flow_x_*.jpg, x_*.jpg or {NPZ_FILE})")
    prefix = DEFAULT_PREFIX if DEFAULT_PREFIX in found else ("" if "" in found else sorted(found)[0])
    indices = found[prefix]
    digits, ext = sample[prefix]
    return {
        "format": "jpg",
        "prefix": prefix,
        "index_base": 0 if min(indices) == 0 else 1,
        "digits": digits,
        "ext": ext,
        "bound": DEFAULT_BOUND,
        "num_flows": len(indices),
    }


def _layout(folder: Path) -> dict:
    """Where and how the flow of ``folder`` is stored: the manifest, else what the files show."""
    if not folder.is_dir():
        raise VidactError(f"{folder}: flow folder not found")
    manifest = read_manifest(folder) or {}
    fmt = manifest.get("format")
    if fmt is None:
        fmt = "npz" if (folder / NPZ_FILE).is_file() else "jpg"
    if fmt == "npz":
        return {"format": "npz", **{k: v for k, v in manifest.items() if k != "format"}}
    layout = (
        _detect_jpg_layout(folder)
        if not {"prefix", "index_base"} <= manifest.keys()
        else {"format": "jpg", "digits": DEFAULT_DIGITS, "ext": "jpg", "bound": DEFAULT_BOUND}
    )
    layout.update(
        {k: manifest[k] for k in ("prefix", "index_base", "digits", "ext", "bound", "num_flows") if k in manifest}
    )
    return layout


def _load_npz(folder: Path) -> np.ndarray:
    path = folder / NPZ_FILE
    try:
        with np.load(path) as data:
            return data["flow"]
    except (OSError, KeyError, ValueError) as exc:
        raise VidactError(f"{path}: unreadable flow archive: {exc}") from None


def _read_gray(path: Path) -> np.ndarray:
    import cv2

    try:  # read from Python, decode in memory: cv2.imread crashes on non-UTF-8 paths
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        data = np.empty(0, np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if img is None:
        raise VidactError(f"{path}: missing or unreadable flow image")
    return img


def read_flow(folder: str | Path, indices: Sequence[int] | None = None) -> np.ndarray:
    """Flow fields ``indices`` (0-based; None = all) of ``folder`` as float32 (K, 2, H, W) pixels."""
    folder = Path(folder)
    layout = _layout(folder)
    if layout["format"] == "npz":
        flows = _load_npz(folder)
        if indices is None:
            return flows.astype(np.float32)
        idx = np.asarray(list(indices), dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(flows)):
            raise VidactError(
                f"{folder}: flow index {int(idx.max() if idx.max() >= len(flows) else idx.min())} "
                f"out of range ({len(flows)} flows)"
            )
        return flows[idx].astype(np.float32)
    if indices is None:
        indices = range(count_flow(folder))
    base, prefix, bound = int(layout["index_base"]), layout["prefix"], float(layout["bound"])
    digits, ext = int(layout.get("digits", DEFAULT_DIGITS)), layout.get("ext", "jpg")
    out = []
    for i in indices:
        pair = [_read_gray(folder / _jpg_name(prefix, axis, base + int(i), digits, ext)) for axis in "xy"]
        out.append(dequantize(np.stack(pair), bound))
    if not out:
        raise VidactError(f"{folder}: no flow indices requested")
    return np.stack(out)


def count_flow(folder: str | Path) -> int:
    """Number of flow fields (frame pairs) stored in ``folder``."""
    folder = Path(folder)
    layout = _layout(folder)
    if "num_flows" in layout:
        return int(layout["num_flows"])
    if layout["format"] == "npz":
        return int(_load_npz(folder).shape[0])
    return _detect_jpg_layout(folder)["num_flows"]
