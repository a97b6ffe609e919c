"""Long jobs: what agreeing on a stop costs every step, and what activation checkpointing and --accumulate save.

1. ``agreement``: two gloo processes on the CPU time the all-reduce a training step does anyway
   (its loss, one float), the one vidact does (the loss and the save/stop flags in one tensor of
   three floats) and the naive alternative (the loss, then the flags in a second all-reduce), per step.
2. ``memory``: the resident memory one training step of 8 clips adds at its peak (activations,
   gradients, the recomputation; each setup in a fresh process, ``ru_maxrss``) and the step's
   time, for a model as it is, with ``--activation-checkpointing all``, and ``--accumulate 4``
   micro-batches of 2 with and without it.

    python benchmarks/long_jobs.py            # both, a few minutes on 2 cores
    python benchmarks/long_jobs.py --quick    # tiny sizes (the test suite runs this)
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.multiprocessing as mp
from torch import nn


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _agreement_rank(rank: int, port: int, steps: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    loss = torch.tensor(0.5)
    variants = {
        "loss only (before)": lambda: dist.all_reduce(loss.clone()),
        "loss + flags, one all-reduce (vidact)": lambda: dist.all_reduce(torch.cat([loss.reshape(1), torch.zeros(2)])),
        "loss, then flags (a second all-reduce)": lambda: (
            dist.all_reduce(loss.clone()),
            dist.all_reduce(torch.zeros(2)),
        ),
    }
    times = dict.fromkeys(variants, 0.0)
    for step in variants.values():
        for _ in range(20):
            step()  # warm-up
    rounds = 10  # the variants take turns, so a change in the machine's load hits them alike
    for _ in range(rounds):
        for name, step in variants.items():
            dist.barrier()
            start = time.perf_counter()
            for _ in range(steps // rounds):
                step()
            times[name] += (time.perf_counter() - start) / steps
    if rank == 0:
        with open(out, "w") as f:
            json.dump(times, f)
    dist.destroy_process_group()


def agreement(steps: int, out_dir: str) -> list[dict]:
    path = os.path.join(out_dir, "agreement.json")
    mp.start_processes(_agreement_rank, args=(_free_port(), steps, path), nprocs=2, join=True, start_method="fork")
    with open(path) as f:
        times = json.load(f)
    base = next(iter(times.values()))
    return [{"variant": k, "us_per_step": 1e6 * v, "ratio": v / base} for k, v in times.items()]


def _step_rank(_: int, arch: str, frames: int, size: int, setup: str, repeats: int, out: str) -> None:
    """In a fresh process: the resident memory one training step adds at its peak, and its time."""
    import resource

    from vidact.models.registry import create_model, get_entry
    from vidact.train.accumulate import accumulate_gradients
    from vidact.train.memory import checkpoint_stages
    from vidact.train.subbatch_bn import convert_sub_batch_norm

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_model(arch, num_classes=10).train()
    x, y = get_entry(arch).example_input(8, frames, size), torch.randint(0, 10, (8,))
    k = 4 if "accumulate" in setup else 1
    if "checkpointing" in setup:
        checkpoint_stages(model, "all")
    if k > 1:
        convert_sub_batch_norm(model, base=2)
    times, peaks = [], []
    for _ in range(repeats):
        model.zero_grad(set_to_none=True)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        accumulate_gradients(model, x, y, k, lambda xs, ys: nn.functional.cross_entropy(model(xs), ys))
        times.append(time.perf_counter() - start)
        peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)  # KiB, the first step's counts
    with open(out, "w") as f:
        json.dump({"peak_mb": peaks[0] / 1024, "seconds": min(times)}, f)


SETUPS = (
    "batch 8",
    "batch 8, activation checkpointing all",
    "--accumulate 4 --batch-size 2",
    "--accumulate 4 --batch-size 2, checkpointing all",
)


def memory(arch: str, frames: int, size: int, repeats: int, out_dir: str) -> list[dict]:
    rows = []
    for setup in SETUPS:
        path = os.path.join(out_dir, "step.json")
        args = (arch, frames, size, setup, repeats, path)
        mp.start_processes(_step_rank, args=args, nprocs=1, join=True, start_method="fork")
        with open(path) as f:
            rows.append({"setup": setup, **json.load(f)})
    for row in rows:
        row["memory_ratio"] = row["peak_mb"] / rows[0]["peak_mb"]
        row["time_ratio"] = row["seconds"] / rows[0]["seconds"]
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--out", default="/tmp", help="folder for the ranks' timings")
    args = parser.parse_args(argv)
    torch.set_num_threads(1 if args.quick else torch.get_num_threads())
    result = {"agreement": agreement(200 if args.quick else 5000, args.out)}
    models = [("x3d-xs", 4, 32)] if args.quick else [("x3d-xs", 4, 160), ("slowfast-r50-4x16", 32, 112)]
    result["memory"] = {arch: memory(arch, t, s, 1 if args.quick else 2, args.out) for arch, t, s in models}
    print("| all-reduce per step (2 gloo processes, CPU) | us/step | ratio |\n|---|---|---|")
    for r in result["agreement"]:
        print(f"| {r['variant']} | {r['us_per_step']:.1f} | {r['ratio']:.2f} |")
    for arch, rows in result["memory"].items():
        print(
            f"\n| {arch}: 8 clips per step | peak memory added (MB) | ratio | step (s) | ratio |\n|---|---|---|---|---|"
        )
        for r in rows:
            print(
                f"| {r['setup']} | {r['peak_mb']:.1f} | {r['memory_ratio']:.2f} | {r['seconds']:.2f} | "
                f"{r['time_ratio']:.2f} |"
            )
    return result


if __name__ == "__main__":
    main()
