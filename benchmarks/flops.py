"""Cost of counting: vidact's per-op counter against torch's FlopCounterMode, both on the meta device.

For each architecture at its paper input the model is built on the meta device once, then counted by
each counter in interleaved rounds; the table gives the median seconds, the ratio vidact / torch
measured in the same run, and whether both agree on the multiply-adds (torch counts 2 per MAC).

    .venv/bin/python benchmarks/flops.py
    .venv/bin/python benchmarks/flops.py --archs c3d i3d x3d-m --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from vidact.models import get_entry
from vidact.profile.flops import count_flops

DEFAULT = ["c3d", "i3d", "i3d-two-stream", "two-stream", "slow-fusion"]


def _torch_count(model, inputs) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(inputs)
    return counter.get_total_flops() // 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=DEFAULT)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, meta device")
    print(f"{'arch':16s} {'input':30s} {'GFLOPs':>8s} {'vidact s':>9s} {'torch s':>8s} {'ratio':>6s} agree")
    for arch in args.archs:
        entry = get_entry(arch)
        with torch.device("meta"):
            model = entry.builder(**entry.defaults).eval()
            inputs = entry.example_input(1, device="meta")
        ours, theirs = [], []
        for _ in range(args.rounds):
            start = time.perf_counter()
            report = count_flops(model, inputs)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            reference = _torch_count(model, inputs)
            theirs.append(time.perf_counter() - start)
        a, b = statistics.median(ours), statistics.median(theirs)
        shape = " + ".join("x".join(map(str, s)) for s in report.input_shapes)
        print(
            f"{arch:16s} {shape:30s} {report.gflops:8.2f} {a:9.3f} {b:8.3f} {a / b:6.2f} "
            f"{'yes' if reference == report.macs else f'no ({reference / 1e9:.2f})'}"
        )


if __name__ == "__main__":
    main()
