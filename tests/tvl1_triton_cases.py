"""Run in a subprocess with TRITON_INTERPRET=1 (Triton reads it when the kernels are defined):
the fused kernel on CPU against the torch solver; prints one JSON object.

    TRITON_INTERPRET=1 python tests/tvl1_triton_cases.py small|full
"""

from __future__ import annotations

import json
import os
import sys

import cv2
import numpy as np
import torch

assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1"

from vidact.flow.tvl1 import TVL1, TVL1Params  # noqa: E402
from vidact.flow.tvl1_triton import FusedTVL1  # noqa: E402

CASES = {
    # (params, frame size, tile, pairs): "small" runs in seconds, "full" covers two levels and more tiles
    "small": (
        TVL1Params(nscales=1, warps=2, outer_iterations=1, inner_iterations=10, epsilon=0.05),
        (12, 20),
        (8, 16),
        3,
    ),
    "full": (TVL1Params(nscales=2, warps=2, outer_iterations=3, inner_iterations=10), (20, 28), (8, 16), 3),
}


def pairs(h: int, w: int, count: int):
    """A translation, a smaller shear, and a pair without motion (stops first)."""
    rng = np.random.default_rng(3)
    tex = cv2.GaussianBlur(rng.uniform(0, 255, size=(h, w)).astype(np.float32), (0, 0), 1.5) * 3 - 200
    tex = np.clip(tex, 0, 255).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    flows = [(np.full_like(xx, 1.3), np.full_like(xx, -0.6)), (0.03 * (yy - h / 2), -0.03 * (xx - w / 2))]
    i0 = [cv2.remap(tex, xx + fx, yy + fy, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT) for fx, fy in flows]
    i0.append(tex)
    return np.clip(np.stack(i0[:count]), 0, 255).astype(np.uint8), np.stack([tex] * count).astype(np.uint8)


def main(case: str) -> None:
    torch.set_num_threads(1)
    params, (h, w), tile, count = CASES[case]
    i0, i1 = pairs(h, w, count)
    ref = TVL1(params, compile=False, chunk=0, record_iterations=True)
    ref.opencv_median = False  # the median the fused path uses (sorting network), identical to cv2's
    expected = ref(i0, i1)
    solver = FusedTVL1(params, device="cpu", tile=tile, record_iterations=True, check_every=5)
    got = solver(i0, i1)
    alone = FusedTVL1(params, device="cpu", tile=tile)(i0[-1:], i1[-1:])  # the motionless pair by itself
    print(
        json.dumps(
            {
                "kernel_info": solver.kernel_info,
                "graphs": solver.graphs,
                "ref_iterations": [t.tolist() for t in ref.pair_iterations],
                "fused_iterations": [t.tolist() for t in solver.pair_iterations],
                "max_diff": float((got - expected).abs().max()),
                "max_flow": float(expected.abs().max()),
                "alone_diff": float((got[-1:] - alone).abs().max()),
                "chunks_launched": solver.chunks_launched,
                "tiles": [-(-h // tile[0]), -(-w // tile[1])],
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
