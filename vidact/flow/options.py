"""The options of one flow extraction: how every input becomes flow (:class:`FlowOptions`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from vidact.errors import UsageError
from vidact.flow.tvl1 import TVL1Params
from vidact.io import flowio

BACKENDS = ("torch", "opencv")
FORMATS = ("jpg", "npz")


@dataclass(frozen=True)
class FlowOptions:
    """How every input becomes flow."""

    backend: str = "torch"
    device: str = "cpu"
    batch: int | None = None  # frame pairs per solver call; None: 1 on CPU, 256 on CUDA
    short_side: int | None = None
    bound: float = flowio.DEFAULT_BOUND
    fmt: str = "jpg"
    quality: int = flowio.DEFAULT_QUALITY
    compile: bool | str = "auto"
    params: TVL1Params = field(default_factory=TVL1Params)
    eager_reason: str = "--no-compile"  # recorded in flow.json when compile is False

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.fmt not in FORMATS:
            raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {self.fmt!r}")
        if self.batch is not None and self.batch < 1:
            raise UsageError(f"--batch must be >= 1, got {self.batch}")
        if not self.bound > 0:
            raise UsageError(f"--bound must be > 0, got {self.bound}")
        if self.short_side is not None and self.short_side < 16:
            raise UsageError(f"--short-side must be >= 16, got {self.short_side}")
        if self.backend == "opencv" and not self.device.startswith("cpu"):
            raise UsageError("--backend opencv runs on the CPU only; use --backend torch for --device cuda")
        if not self.device.startswith(("cpu", "cuda")):
            raise UsageError(f"--device must be cpu or cuda[:k], got {self.device!r}")

    @property
    def pairs_per_call(self) -> int:
        if self.batch is not None:
            return self.batch
        return 256 if self.device.startswith("cuda") else 1
