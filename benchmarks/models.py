"""Training clips/s of vidact's X3D-M and SlowFast R50 8x8 against PyTorchVideo's modules.

Every combination of implementation (vidact, pytorchvideo), memory format (contiguous,
channels-last-3d), precision (fp32, bf16 autocast) and, with ``--compile``, torch.compile is
timed on full training steps (forward, cross-entropy, backward, SGD step) in interleaved
rounds; the table gives the median clips/s and the ratio to PyTorchVideo fp32 eager
contiguous measured in the same run, then the best vidact mode against the best PyTorchVideo
mode (the goal on the GPU: 1.5x). On CUDA the defaults are training shapes (X3D-M
B=32 16x224, SlowFast B=16 32x224); on CPU they are small so the run takes minutes.

    .venv/bin/python benchmarks/models.py                      # CPU: X3D-M B=2 16x112, SlowFast B=1 32x112
    .venv/bin/python benchmarks/models.py --device cuda --compile
    .venv/bin/python benchmarks/models.py --models x3d-m --batch 4 --size 160 --rounds 5 --threads 2
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vidact.models import create_model

NUM_CLASSES = 400


@dataclass
class Case:
    arch: str
    impl: str
    channels_last: bool
    bf16: bool
    compiled: bool
    model: nn.Module
    optimizer: torch.optim.Optimizer
    inputs: object
    labels: torch.Tensor
    rates: list[float] = field(default_factory=list)

    @property
    def mode(self) -> str:
        return " + ".join(
            [
                ("channels-last" if self.channels_last else "contiguous"),
                ("bf16" if self.bf16 else "fp32"),
                ("compile" if self.compiled else "eager"),
            ]
        )


def pytorchvideo_model(arch: str, frames: int, size: int) -> nn.Module:
    if arch == "x3d-m":
        from pytorchvideo.models.x3d import create_x3d

        return create_x3d(
            input_clip_length=frames,
            input_crop_size=size,
            depth_factor=2.2,
            model_num_class=NUM_CLASSES,
            head_activation=None,
        )
    if arch == "slowfast-r50-8x8":
        from pytorchvideo.models.slowfast import create_slowfast

        return create_slowfast(model_num_class=NUM_CLASSES, head_pool=nn.AdaptiveAvgPool3d)
    raise SystemExit(f"no PyTorchVideo counterpart for {arch}")


def make_inputs(impl: str, arch: str, clip: torch.Tensor, fmt: torch.memory_format):
    """SlowFast: PyTorchVideo takes [slow, fast]; vidact takes the fast-rate clip and slices it."""
    if arch.startswith("slowfast") and impl == "pytorchvideo":
        return [clip[:, :, ::4].contiguous(memory_format=fmt), clip]
    return clip


def build_case(arch, impl, channels_last, bf16, compiled, batch, frames, size, device) -> Case:
    torch.manual_seed(0)
    model = (
        pytorchvideo_model(arch, frames, size)
        if impl == "pytorchvideo"
        else create_model(arch, num_classes=NUM_CLASSES)
    )
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    model = model.to(device).to(memory_format=fmt).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    clip = torch.randn(batch, 3, frames, size, size, device=device).contiguous(memory_format=fmt)
    labels = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    if compiled:
        model = torch.compile(model)
    return Case(arch, impl, channels_last, bf16, compiled, model, optimizer, make_inputs(impl, arch, clip, fmt), labels)


def train_steps(case: Case, steps: int, device: torch.device) -> float:
    """Seconds for ``steps`` full training steps."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=case.bf16):
            inputs = list(case.inputs) if isinstance(case.inputs, list) else case.inputs  # PTV edits lists in place
            loss = F.cross_entropy(case.model(inputs), case.labels)
        case.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        case.optimizer.step()
    sync()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", default="x3d-m,slowfast-r50-8x8")
    p.add_argument("--batch", type=int, help="clips per step (default: 32/16 on CUDA, 2/1 on CPU)")
    p.add_argument("--size", type=int, help="crop size (default: 224 on CUDA, 112 on CPU)")
    p.add_argument("--steps", type=int, help="timed steps per round (default: 10 on CUDA, 1 on CPU)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
    p.add_argument("--impls", default="pytorchvideo,vidact")
    p.add_argument(
        "--threads",
        type=int,
        help="intra-op CPU threads (default: 1 on CPU, where a shared "
        "machine's oversubscribed OpenMP threads distort timings)",
    )
    args = p.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if args.threads or not cuda:
        torch.set_num_threads(args.threads or 1)
    steps = args.steps or (10 if cuda else 1)
    size = args.size or (224 if cuda else 112)
    print(
        f"device: {torch.cuda.get_device_name(device) if cuda else 'cpu'} ({torch.get_num_threads()} threads), "
        f"torch {torch.__version__}",
        file=sys.stderr,
    )

    rows = []
    for arch in args.models.split(","):
        frames = 32 if arch.startswith("slowfast") else 16
        batch = args.batch or (
            (16 if arch.startswith("slowfast") else 32) if cuda else (1 if arch.startswith("slowfast") else 2)
        )
        compile_opts = (False, True) if args.compile else (False,)
        cases = [
            build_case(arch, impl, cl, bf16, comp, batch, frames, size, device)
            for impl, cl, bf16, comp in itertools.product(
                args.impls.split(","), (False, True), (False, True), compile_opts
            )
        ]
        for case in cases:  # warm-up: allocator, oneDNN/cuDNN plans, compilation
            train_steps(case, 2 if case.compiled or cuda else 1, device)
        for _ in range(args.rounds):
            for case in cases:
                case.rates.append(batch * steps / train_steps(case, steps, device))
        ref = (
            next(c for c in cases if c.impl == "pytorchvideo" and not (c.channels_last or c.bf16 or c.compiled))
            if "pytorchvideo" in args.impls
            else cases[0]
        )
        ref_rate = statistics.median(ref.rates)
        shape = f"B={batch} {frames}x{size}x{size}"
        for case in cases:
            rate = statistics.median(case.rates)
            rows.append((arch, shape, case.impl, case.mode, rate, rate / ref_rate))
        best = {
            impl: max((c for c in cases if c.impl == impl), key=lambda c: statistics.median(c.rates))
            for impl in args.impls.split(",")
        }
        if len(best) == 2:
            v, r = best["vidact"], best["pytorchvideo"]
            rows.append(
                (
                    arch,
                    shape,
                    "best vidact / best pytorchvideo",
                    f"{v.mode} / {r.mode}",
                    statistics.median(v.rates),
                    statistics.median(v.rates) / statistics.median(r.rates),
                )
            )
        del cases

    print(
        f"\ntraining clips/s, median of {args.rounds} rounds x {steps} steps; ratio vs pytorchvideo "
        f"contiguous + fp32 + eager of the same model ({device.type})"
    )
    print(f"| {'model':<17} | {'input':<16} | {'impl':<31} | {'mode':<48} | {'clips/s':>8} | {'ratio':>6} |")
    print(f"|{'-' * 19}|{'-' * 18}|{'-' * 33}|{'-' * 50}|{'-' * 10}|{'-' * 8}|")
    for arch, shape, impl, mode, rate, ratio in rows:
        print(f"| {arch:<17} | {shape:<16} | {impl:<31} | {mode:<48} | {rate:8.2f} | {ratio:6.2f} |")


if __name__ == "__main__":
    main()
