"""Resident memory, window latency and windows/s of ``vidact predict`` on a long stream.

A lavfi test pattern (``testsrc2``, 320x240 at 25 fps) of ``--minutes`` of video runs through the
streaming predictor (:func:`vidact.predict.stream.predict_windows`, what ``vidact predict CKPT lavfi:...``
runs) with an X3D-XS checkpoint (random weights) at its 160 px test view on the CPU. The stream is
decoded as fast as it is scored (the long run), and a second, shorter run is paced at 25 fps by
FFmpeg's ``realtime`` filter, as a camera would deliver it, for the window latency (last frame of a
window arriving -> its prediction).

The reference is the run's own resident memory (VmRSS) after the first minute of stream: the table
gives RSS at every further minute as a ratio to it, and the verdict is whether all stay within 10%.

    python benchmarks/stream_memory.py --minutes 10 --paced-seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch


def rss_mb() -> float:
    """This process's resident set size in MiB (VmRSS of /proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def make_checkpoint(path: Path, arch: str) -> Path:
    from vidact.models import create_model, get_entry
    from vidact.runtime.checkpoint import save_checkpoint

    torch.manual_seed(0)
    entry = get_entry(arch)
    model = create_model(arch, num_classes=400)
    inp = {"modality": "rgb", "channels": 3, "frames": entry.input.frames, "size": entry.input.size}
    inp["stride"] = entry.input.stride
    save_checkpoint(
        path, arch=arch, classes=[f"class{i}" for i in range(400)], config={"arch": arch}, input=inp,
        model=model.state_dict(),
    )  # fmt: skip
    return path


def run(checkpoint: Path, spec: str, *, hop: float | None, threads: int, sample_every: float) -> dict:
    """One streaming run: its report and (stream seconds, wall seconds, RSS MiB) samples."""
    from vidact.io.stream import parse_source
    from vidact.predict.predictor import load_predictor
    from vidact.predict.stream import predict_windows

    torch.set_num_threads(threads)
    predictor = load_predictor(checkpoint, "cpu")
    samples: list[tuple[float, float, float]] = []
    start = time.monotonic()

    def on_window(row: dict) -> None:
        if not samples or row["end"] - samples[-1][0] >= sample_every:
            samples.append((row["end"], time.monotonic() - start, rss_mb()))

    report = predict_windows(predictor, parse_source(spec), hop=hop, topk=5, on_window=on_window)
    return {"report": report.to_dict(), "samples": samples, "wall_s": round(time.monotonic() - start, 1)}


def memory_table(samples: list[tuple[float, float, float]], reference_at: float = 60.0) -> tuple[list[dict], bool]:
    """RSS at each minute of stream as a ratio to the RSS after the first minute."""
    after = [s for s in samples if s[0] >= reference_at]
    if not after:
        return [], False
    reference = after[0][2]
    rows, minute = [], reference_at
    for stream_s, wall_s, mb in samples:
        if stream_s >= minute or (stream_s, wall_s, mb) == samples[-1]:
            rows.append({"stream_s": round(stream_s, 1), "wall_s": round(wall_s, 1), "rss_mb": round(mb, 1),
                         "ratio": round(mb / reference, 4)})  # fmt: skip
            minute = (stream_s // 60 + 1) * 60
    return rows, all(0.9 <= r["ratio"] <= 1.1 for r in rows)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="stream length of the long run")
    parser.add_argument("--paced-seconds", type=float, default=60.0, help="length of the real-time run (0: none)")
    parser.add_argument("--hop", type=float, default=None, help="seconds between windows (default: the window)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--arch", default="x3d-xs")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    size = "size=320x240:rate=25"
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = make_checkpoint(Path(tmp) / f"{args.arch}.pt", args.arch)
        long_run = run(ckpt, f"lavfi:testsrc2={size}:duration={args.minutes * 60:g}", hop=args.hop,
                       threads=args.threads, sample_every=10.0)  # fmt: skip
        paced = None
        if args.paced_seconds > 0:
            spec = f"lavfi:testsrc2={size}:duration={args.paced_seconds:g},realtime"
            paced = run(ckpt, spec, hop=args.hop, threads=args.threads, sample_every=10.0)
    rows, flat = memory_table(long_run["samples"])
    load = os.getloadavg()
    print(f"# {args.arch} at 160 px on the CPU ({args.threads} threads), load average {load[0]:.2f} {load[1]:.2f}")
    print("| stream s | wall s | RSS MiB | ratio to RSS after 1 min |")
    print("|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['stream_s']} | {r['wall_s']} | {r['rss_mb']} | {r['ratio']:.3f} |")
    rep = long_run["report"]
    print(f"RSS within 10% of its value after the first minute: {'yes' if flat else 'NO'}")
    print(f"long run: {rep['windows']} windows, {rep['frames']} frames in {long_run['wall_s']} s, "
          f"{rep['windows_per_second']} windows/s, ended: {rep['ended']}")  # fmt: skip
    if paced is not None:
        p = paced["report"]
        print(f"paced at 25 fps: {p['windows']} windows, latency ms {p['latency_ms']}, "
              f"{p['dropped_frames']} frames dropped, {p['windows_per_second']} windows/s")  # fmt: skip
    out = {"arch": args.arch, "threads": args.threads, "load": load, "memory": rows, "flat": flat,
           "long": long_run, "paced": paced}  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    sys.exit(0 if main()["flat"] else 1)
