"""DataLoaders for ``VideoClipDataset``: how many workers (:func:`plan_loading`), seeded workers and a clip collate.

How a process's cores are shared (:func:`plan_loading`): a training process gets the usable cores
divided by the processes on its node (torchrun's ``LOCAL_WORLD_SIZE``). Its model runs on that many
torch threads, and as many loader workers decode clips beside it, each with its share of
decoder threads. The workers sleep once their prefetched batches wait, so the overlap costs little
when loading is cheap and hides it when it is not (``benchmarks/loading.py --plan`` measures it).
"""

from __future__ import annotations

import atexit
import functools
import logging
import multiprocessing
import os
import random
import signal
import weakref
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vidact.io.cpu import threads_per_process, usable_cores
from vidact.io.video import set_decoder_threads

AUTO_WORKERS = -1  # ``workers`` value meaning: from the usable cores and the processes
MAX_AUTO_WORKERS = 8  # enough to feed one GPU at Kinetics clip sizes; more only adds memory


@dataclass(frozen=True)
class LoaderPlan:
    """How one process splits its share of the cores between its model and its data loading."""

    cores: int  # usable cores of this node
    processes: int  # processes on this node that share them
    workers: int  # loader worker processes
    decoder_threads: int  # FFmpeg threads per opened video, in each worker (or in the process without workers)
    torch_threads: int  # intra-op threads of the process itself
    workers_given: bool = False  # --workers chose the workers

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        """One line saying what was chosen and from what."""
        procs = f", {self.processes} processes" if self.processes > 1 else ""
        torch_threads = f"{self.torch_threads} torch thread{'s' if self.torch_threads != 1 else ''}"
        decoders = f"{self.decoder_threads} decoder thread{'s' if self.decoder_threads != 1 else ''}"
        if self.workers == 0:
            loading = f"in the training process (0 loader workers, as given), {decoders}"
        else:
            chosen = "as given" if self.workers_given else "one per usable core"
            loading = f"{self.workers} loader worker{'s' if self.workers != 1 else ''} ({chosen}), {decoders} each"
        return f"data loading: {loading}; {torch_threads} ({self.cores} usable cores{procs})"


def plan_loading(
    *, processes: int = 1, workers: int = AUTO_WORKERS, torch_threads: int = 0, cores: int | None = None
) -> LoaderPlan:
    """Workers, decoder threads and torch threads for one of ``processes`` processes on ``cores`` cores.

    ``workers`` -1 (default): one loader worker per core of this process's share (at most
    :data:`MAX_AUTO_WORKERS`); ``torch_threads`` 0 (default): torch's current count (one per physical
    core unless set lower), at most the share. Each worker decodes with the share divided among the
    workers (at least one thread), so workers x decoder threads fit it.
    """
    if workers < AUTO_WORKERS:
        raise ValueError(f"workers must be >= 0 (or -1 for the default), got {workers}")
    cores = usable_cores() if cores is None else max(1, cores)
    share = threads_per_process(cores, processes)
    given = workers != AUTO_WORKERS
    count = workers if given else min(share, MAX_AUTO_WORKERS)
    return LoaderPlan(
        cores=cores,
        processes=max(1, processes),
        workers=count,
        decoder_threads=threads_per_process(share, count),
        torch_threads=torch_threads or min(torch.get_num_threads(), share),
        workers_given=given,
    )


def collate_clips(items: list[dict]) -> dict:
    """Stack items into a batch: ``video`` (B, C, T, H, W) or a list of such per stream,
    and ``label``, ``index``, ``view`` as int64 tensors."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    first = items[0]["video"]
    if isinstance(first, (list, tuple)):
        video = [torch.stack([it["video"][s] for it in items]) for s in range(len(first))]
    else:
        video = torch.stack([it["video"] for it in items])
    batch = {"video": video}
    for key in ("label", "index", "view"):
        batch[key] = torch.tensor([int(it[key]) for it in items], dtype=torch.int64)
    return batch


# Signals that ask a job to stop (a scheduler's SIGTERM or chosen SIGUSR1, a terminal's SIGINT). A job
# scheduler sends them to every process of the job: loader workers ignore them, so that the main
# process decides when to stop (a worker that died of one would end it mid-iteration).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class WorkerLogs:
    """Warnings that loader workers log, logged again by the loader's own process, once each, as batches arrive.

    Left to themselves, workers would write through the handlers they inherited, past whatever the
    parent captures (a test's stderr, a log file set up later), and name one bad video once per worker.
    """

    def __init__(self):
        self.queue = multiprocessing.SimpleQueue()  # put() is synchronous: a record is sent before the batch
        self.seen: set[tuple[str, int, str]] = set()

    def install(self) -> None:
        """In a worker: send ``vidact`` log records to the parent instead of handling them here."""
        log = logging.getLogger("vidact")
        log.handlers = [_QueueHandler(self.queue)]
        log.propagate = False

    def relog(self) -> None:
        """In the parent: log what the workers sent so far, each distinct message once."""
        while not self.queue.empty():
            name, level, message = self.queue.get()
            if (name, level, message) not in self.seen:
                self.seen.add((name, level, message))
                logging.getLogger(name).log(level, message)


class _QueueHandler(logging.Handler):
    def __init__(self, queue):
        super().__init__(logging.WARNING)
        self.queue = queue

    def emit(self, record: logging.LogRecord) -> None:
        self.queue.put((record.name, record.levelno, record.getMessage()))


class _Exiting:
    """A flag this process raises as it exits, read by its loader workers' stop-signal handler.

    Loader workers ignore :data:`STOP_SIGNALS` so that the training process decides when to stop.
    When that process exits, multiprocessing (and torch) end the workers with SIGTERM and wait for
    them: with the flag up, a worker obeys it at once (exit status 0, so torch reports no failure)
    instead of leaving the exit waiting for a read it is still in.
    """

    def __init__(self):
        self.flag = multiprocessing.RawValue("b", 0)  # shared with forked and spawned workers
        self.pools: weakref.WeakSet = weakref.WeakSet()  # the iterators of every ClipLoader with workers
        self.registered = False

    def watch(self, batches) -> None:
        """Track a loader iterator's workers; the first time, hook this process's exit (after torch's
        own hook is registered, so this one runs first)."""
        self.pools.add(batches)
        if not self.registered:
            atexit.register(self.end_workers)
            self.registered = True

    def end_workers(self) -> None:
        """At exit: raise the flag and send the workers still alive the signal that now ends them."""
        self.flag.value = 1
        for batches in list(self.pools):
            for worker in getattr(batches, "_workers", ()):
                if worker.is_alive():
                    os.kill(worker.pid, signal.SIGTERM)


_exiting: _Exiting | None = None


def _stop_signal_in_worker(flag, signum, frame) -> None:
    """In a worker: a stop signal ends it only once its main process exits (``flag`` up)."""
    if flag.value:
        os._exit(0)


def _exit_flag() -> _Exiting:
    global _exiting
    if _exiting is None:
        _exiting = _Exiting()
    return _exiting


class ClipLoader(DataLoader):
    """A DataLoader whose workers' warnings are logged by this process (:class:`WorkerLogs`) and whose
    workers end when it exits (:class:`_Exiting`)."""

    worker_logs: WorkerLogs | None = None

    def __iter__(self):
        batches = super().__iter__()
        if self.worker_logs is None:
            return batches
        _exit_flag().watch(batches)
        return self._relogging(batches)

    def close(self) -> None:
        """End this loader's worker processes now. Its workers are persistent: left alone they live as long
        as the loader object, which in a process that trains several runs (a benchmark, the demo) is until a
        garbage collection finds it, perhaps in the middle of a later run's epoch."""
        iterator = getattr(self, "_iterator", None)
        self._iterator = None
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        if self.worker_logs is not None:
            self.worker_logs.relog()

    def _relogging(self, batches):
        for batch in batches:
            self.worker_logs.relog()
            yield batch
        self.worker_logs.relog()


def seed_worker(worker_id: int, decoder_threads: int = 0, logs: WorkerLogs | None = None, exiting=None) -> None:
    """Seed numpy and ``random`` in a worker from torch's per-worker seed (itself from the loader's seed),
    set its decoder threads (0: FFmpeg's choice) and send its warnings to the parent (``logs``); the
    worker ignores :data:`STOP_SIGNALS` until its main process exits (``exiting``: :class:`_Exiting`'s flag).

    OpenCV's thread count is deliberately left alone: ``cv2.setNumThreads`` in a forked
    worker can deadlock on the parent's thread-pool state (seen with OpenCV 5.0).
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN if exiting is None else functools.partial(_stop_signal_in_worker, exiting))
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    set_decoder_threads(decoder_threads)
    if logs is not None:
        logs.install()


def build_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    train: bool,
    workers: int = 2,
    sampler=None,
    batch_sampler=None,
    seed: int = 0,
    drop_last: bool | None = None,
    pin_memory: bool = False,
    prefetch_factor: int = 2,
    decoder_threads: int = 0,
) -> ClipLoader:
    """A DataLoader over ``dataset``: shuffled when ``train`` (unless a sampler is given),
    persistent seeded workers when ``workers > 0`` (each decoding with ``decoder_threads``, their
    warnings logged here: :class:`WorkerLogs`), batches from :func:`collate_clips`.

    With ``batch_sampler`` (e.g. multigrid's shape-per-batch sampler) the batch size,
    shuffling and ``drop_last`` come from it.
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    generator = torch.Generator()
    generator.manual_seed(seed)
    logs = WorkerLogs() if workers > 0 else None
    kwargs = dict(
        num_workers=workers,
        collate_fn=collate_clips,
        pin_memory=pin_memory,
        worker_init_fn=functools.partial(
            seed_worker, decoder_threads=decoder_threads, logs=logs, exiting=_exit_flag().flag if workers > 0 else None
        ),
        generator=generator,
    )
    if workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=prefetch_factor)
    if batch_sampler is not None:
        if sampler is not None:
            raise ValueError("give either sampler or batch_sampler, not both")
        loader = ClipLoader(dataset, batch_sampler=batch_sampler, **kwargs)
    elif batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    else:
        loader = ClipLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            drop_last=train if drop_last is None else drop_last,
            **kwargs,
        )
    loader.worker_logs = logs
    return loader


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int = 1,
    batch_sampler=None,
    workers: int = 0,
    seed: int = 0,
    device: torch.device | None = None,
    train: bool = False,
    decoder_threads: int = 0,
) -> ClipLoader:
    """:func:`build_loader` over ``batch_sampler`` (or fixed-size batches in order), pinned memory for CUDA."""
    return build_loader(
        dataset,
        batch_size,
        train=train and batch_sampler is None,
        workers=workers,
        batch_sampler=batch_sampler,
        seed=seed,
        drop_last=False,
        pin_memory=device is not None and device.type == "cuda",
        decoder_threads=decoder_threads,
    )
