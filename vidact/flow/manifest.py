"""One output folder of a flow extraction: its flows on disk and the ``flow.json`` that describes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vidact import __version__
from vidact.flow.options import FlowOptions
from vidact.io import flowio


def flow_manifest(
    options: FlowOptions, src: Path, num_frames: int, flows: np.ndarray, kernel_info: dict | None = None
) -> dict:
    """Everything a reader needs to know about one output folder (``flow.json``)."""
    kernel = kernel_info or {"compiled": None, "kernel": None, "kernel_note": ""}
    return {
        "algorithm": "tv-l1",
        "backend": options.backend,
        "device": options.device if options.backend == "torch" else "cpu",
        "compiled": kernel["compiled"],
        "kernel": kernel["kernel"],
        "kernel_note": kernel["kernel_note"],
        "params": options.params.to_dict(),
        "format": options.fmt,
        "bound": float(options.bound),
        "quantization": "q = round(255 * (clip(f, -B, B) + B) / (2B)), zero -> 128" if options.fmt == "jpg" else None,
        "jpeg_quality": options.quality if options.fmt == "jpg" else None,
        "index_base": 1,
        "prefix": flowio.DEFAULT_PREFIX,
        "digits": flowio.DEFAULT_DIGITS,
        "ext": "jpg",
        "flow_direction": "flow k: frame k -> frame k+1",
        "num_frames": int(num_frames),
        "num_flows": int(flows.shape[0]),
        "height": int(flows.shape[2]),
        "width": int(flows.shape[3]),
        "short_side": options.short_side,
        "source": str(src),
        "vidact_version": __version__,
    }


def write_flow_folder(
    dest: Path, flows: np.ndarray, options: FlowOptions, src: Path, num_frames: int, kernel_info: dict | None = None
) -> None:
    """Write flows (JPEG pairs or flow.npz) and the manifest into ``dest``."""
    if options.fmt == "npz":
        flowio.write_flow_npz(dest, flows)
    else:
        flowio.write_flow_jpgs(dest, flows, bound=options.bound, quality=options.quality)
    flowio.write_manifest(dest, flow_manifest(options, src, num_frames, flows, kernel_info))
