"""Stopping a training run between two iterations: stop signals, periodic checkpoints, every rank agreeing.

A job scheduler asks a job to stop with a signal some time before it kills it (SLURM: SIGTERM, or
the ``--signal`` of the job's choice); a terminal sends SIGINT. :class:`StopSignals` catches
SIGTERM, SIGUSR1 and SIGINT while a run trains: the first one asks the loop to stop after the
current iteration (the run then saves ``last.pt`` at that exact position), a second one ends the
process at once with the signal's default action.

:class:`StepControl` decides after every optimizer step whether to save and whether to stop. Under
torchrun the decision must be the same on every rank (one rank may have received the signal, or
passed the checkpoint interval on its own clock, while the others have not): it rides on the
all-reduce of the step's loss that the loop does anyway, as two more numbers in the same tensor, so
agreeing costs no extra collective.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from vidact.data.loader import STOP_SIGNALS
from vidact.errors import UsageError
from vidact.runtime import distributed


class StopSignals:
    """While entered (in the main thread), the first stop signal sets :attr:`received`; a second exits at once."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # Python delivers signals there only
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.received is None:
            self.received = signum
            return
        signal.signal(signum, signal.SIG_DFL)  # the second signal: no more waiting, no save
        signal.raise_signal(signum)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h)$")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Cadence:
    """Save every ``iterations`` optimizer steps, or every ``seconds`` of training; both 0: never."""

    iterations: int = 0
    seconds: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Cadence:
        """``""`` (never), ``"500"`` (iterations), or a duration ``"90s"``, ``"30m"``, ``"2h"``."""
        text = text.strip().lower()
        if not text:
            return cls()
        if text.isdigit() and int(text) > 0:
            return cls(iterations=int(text))
        m = _DURATION.match(text)
        if m and float(m.group(1)) > 0:
            return cls(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)])
        raise UsageError(
            f"checkpoint_every={text!r} is neither a number of iterations (e.g. 500) nor a duration (90s, 30m, 2h)"
        )

    def due(self, iteration: int, seconds_since_save: float) -> bool:
        if self.iterations:
            return iteration % self.iterations == 0
        return bool(self.seconds) and seconds_since_save >= self.seconds


@dataclass(frozen=True)
class StepDecision:
    """What every rank does after an optimizer step."""

    loss: float  # the step's loss, averaged over ranks
    save: bool  # write last.pt at this position
    stop: int | None  # the stop signal (on any rank; 0 when it came to another rank), None to go on


class StepControl:
    """After each optimizer step: the loss averaged over ranks, and the agreed save and stop decisions."""

    def __init__(
        self,
        cadence: Cadence = Cadence(),
        signals: StopSignals | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cadence, self.signals, self.clock = cadence, signals, clock
        self.last_save = clock()

    def after_step(self, loss: torch.Tensor, iteration: int) -> StepDecision:
        """``loss`` is this rank's loss of the step that made ``iteration`` steps in all."""
        received = self.signals.received if self.signals is not None else None
        save = self.cadence.due(iteration, self.clock() - self.last_save)
        if distributed.is_dist():  # one all-reduce: the loss and both flags summed over ranks
            flags = torch.tensor([float(save), float(received is not None)], device=loss.device)
            summed = distributed.all_reduce_sum(torch.cat([loss.detach().float().reshape(1), flags]))
            loss_value, save, stop = (summed[0] / distributed.get_world_size()).item(), summed[1] > 0, summed[2] > 0
            stop_signal = (received or 0) if stop else None
        else:
            loss_value, stop_signal = float(loss.detach().item()), received
        if save:
            self.last_save = self.clock()
        return StepDecision(loss=loss_value, save=bool(save), stop=stop_signal)

    def stop_requested(self) -> int | None:
        """The stop signal any rank has received (0: another rank's), None when none has; one small all-reduce."""
        received = self.signals.received if self.signals is not None else None
        if not distributed.is_dist():
            return received
        count = distributed.all_reduce_sum(torch.tensor([float(received is not None)], device=self._device()))
        return (received or 0) if count.item() > 0 else None

    @staticmethod
    def _device() -> torch.device:
        """Where the process group's collectives run: the current GPU under NCCL, the CPU under gloo."""
        cuda = torch.cuda.is_available() and torch.distributed.get_backend() == "nccl"
        return torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
