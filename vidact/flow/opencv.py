"""Reference backend: OpenCV's CPU TV-L1 (``cv2.optflow.DualTVL1OpticalFlow``), one pair at a time."""

from __future__ import annotations

import numpy as np

from vidact.errors import VidactError
from vidact.flow.tvl1 import TVL1Params


def to_gray_u8(frames: np.ndarray) -> np.ndarray:
    """(N, H, W) grey frames for OpenCV from (N, H, W) or (N, H, W, 3) RGB (uint8, or float in [0, 1])."""
    import cv2

    frames = np.asarray(frames)
    if frames.ndim == 4 and frames.shape[-1] == 1:
        frames = frames[..., 0]
    if frames.ndim == 4 and frames.shape[-1] == 3:
        if frames.dtype != np.uint8:
            frames = frames.astype(np.float32)
        return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])
    if frames.ndim != 3:
        raise ValueError(f"frames must be (N, H, W) or (N, H, W, 3), got {frames.shape}")
    return frames if frames.dtype == np.uint8 else frames.astype(np.float32)


class OpenCVTVL1:
    """``OpenCVTVL1()(frames0, frames1)`` -> (N, 2, H, W) float32 flow, same interface as ``TVL1``."""

    def __init__(self, params: TVL1Params | None = None):
        import cv2

        if not hasattr(cv2, "optflow"):
            raise VidactError("OpenCV backend needs opencv-contrib-python(-headless) (cv2.optflow is missing)")
        self.params = params or TVL1Params()
        p = self.params
        self.algo = cv2.optflow.DualTVL1OpticalFlow_create(
            tau=p.tau,
            lambda_=p.lambda_,
            theta=p.theta,
            nscales=p.nscales,
            warps=p.warps,
            epsilon=p.epsilon,
            innnerIterations=p.inner_iterations,
            outerIterations=p.outer_iterations,
            scaleStep=p.scale_step,
            gamma=p.gamma,
            medianFiltering=p.median_filtering,
        )

    def pair(self, gray0: np.ndarray, gray1: np.ndarray) -> np.ndarray:
        """Flow (2, H, W) from one grey frame to the next."""
        flow = self.algo.calc(gray0, gray1, None)
        return np.ascontiguousarray(flow.transpose(2, 0, 1))

    def __call__(self, frames0, frames1) -> np.ndarray:
        g0, g1 = to_gray_u8(frames0), to_gray_u8(frames1)
        if g0.shape != g1.shape:
            raise ValueError(f"frame batches differ in shape: {g0.shape} vs {g1.shape}")
        return np.stack([self.pair(a, b) for a, b in zip(g0, g1)]).astype(np.float32)
