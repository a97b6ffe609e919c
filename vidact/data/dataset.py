"""``VideoClipDataset``: labelled clips from video files, frame folders or flow folders.

Training items are one randomly sampled, scale-jittered, cropped and flipped clip per
video. Test items are views: item ``i`` is clip ``k`` of ``num_clips`` uniform clips and
crop ``c`` of ``num_crops`` crops of video ``v``, with ``i = (v * num_clips + k) * num_crops + c``.
Where each view is scaled, cropped and flipped is planned by :mod:`vidact.data.views`.
An unreadable sample is logged once and replaced by another one, chosen
deterministically, so an epoch never crashes on one bad file; ``skipped`` counts them
across DataLoader workers.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from vidact.data import sampling, transforms, views
from vidact.data.annotations import Sample
from vidact.data.protocols import EvalProtocol
from vidact.errors import VidactError, VideoDecodeError, first_line
from vidact.io import flowio, frames
from vidact.io.video import decode_frames, probe

logger = logging.getLogger(__name__)

MODALITIES = ("rgb", "flow", "rgb+flow")
SAMPLERS = ("random", "uniform", "tsn", "dense")
READ_ERRORS = (VidactError, OSError)  # what an unreadable sample raises; anything else is a bug
VIDEO, FRAMES, FLOW = "video", "frames", "flow"


@dataclass(frozen=True)
class ClipSpec:
    """One mini-batch shape: frames per clip, square crop size, temporal stride."""

    num_frames: int
    crop_size: int
    stride: int


@dataclass(frozen=True)
class ClipPlan:
    """One item's recipe: the video, its streams (path, is_flow), frame indices and spatial params."""

    video: int
    streams: tuple[tuple[str, bool], ...]
    indices: np.ndarray
    params: views.SpatialParams


def detect_source(path: str | Path) -> str:
    """``"video"`` for a file, ``"frames"`` for a folder of ``img_*.jpg``, ``"flow"`` for a flow folder.

    An MMAction2 rawframes folder holding both ``img_*`` and ``flow_x_*`` counts as frames;
    its flow is still read for the flow stream.
    """
    path = Path(path)
    if path.is_file():
        return VIDEO
    if not path.is_dir():
        raise VideoDecodeError(path, "no such file or folder")
    has_flow = False
    with os.scandir(path) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith(frames.PREFIX) and name.endswith(frames.EXT):
                return FRAMES
            has_flow = has_flow or name in (flowio.NPZ_FILE, flowio.MANIFEST_FILE) or name.startswith(("flow_x_", "x_"))
    if has_flow:
        return FLOW
    raise VideoDecodeError(path, "folder holds neither frames (img_*.jpg) nor flow (flow_x_*.jpg, flow.npz)")


def flow_folder_for(path: str | Path, flow_root: str | Path, data_root: str | Path | None = None) -> Path:
    """The flow folder mirroring ``path`` under ``flow_root`` (extension dropped).

    With ``data_root`` the layout is ``flow_root/<path relative to data_root>``; without it,
    the longest tail of ``path`` that exists under ``flow_root`` is used.
    """
    path, flow_root = Path(path), Path(flow_root)
    stem = path.with_suffix("") if path.suffix else path
    if data_root is not None:
        return flow_root / stem.relative_to(Path(data_root).resolve())
    parts = stem.parts[1:] if stem.is_absolute() else stem.parts
    for k in range(len(parts)):
        candidate = flow_root.joinpath(*parts[k:])
        if candidate.is_dir():
            return candidate
    raise VideoDecodeError(path, f"no flow folder for it under {flow_root}")


class VideoClipDataset(Dataset):
    """Clips of ``samples`` as float tensors (C, T, H, W), with label, video index and view.

    ``modality``: ``"rgb"`` (3 channels, from video files or frame folders), ``"flow"``
    (2 channels x/y, divided by ``flow_scale``) or ``"rgb+flow"`` (a list [rgb, flow] of one
    clip, same frames and same crop). Flow folders are found under ``flow_root`` with the
    samples' relative layout; without ``flow_root`` the sample's own folder holds the flow
    (a flow folder, or an MMAction2 rawframes folder with img_* and flow_x_* side by side).
    Keys are item indices or ``(index, ClipSpec)`` for another clip shape.
    """

    def __init__(
        self,
        samples: list[Sample],
        *,
        modality: str = "rgb",
        num_frames: int = 16,
        stride: int = 2,
        crop_size: int = 112,
        train: bool = True,
        num_clips: int = 1,
        num_crops: int = 1,
        scale_range: tuple[int, int] | None = None,
        flow_root: str | Path | None = None,
        data_root: str | Path | None = None,
        sampler: str = "random",
        seed: int = 0,
        max_retries: int = 10,
        mean: tuple[float, float, float] = transforms.RGB_MEAN,
        std: tuple[float, float, float] = transforms.RGB_STD,
        flow_scale: float = transforms.FLOW_SCALE,
        hflip: bool = True,
        protocol: EvalProtocol | None = None,
    ):
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {', '.join(MODALITIES)}; got {modality!r}")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
        if min(num_frames, stride, crop_size, num_clips, num_crops, max_retries) < 1:
            raise ValueError("num_frames, stride, crop_size, num_clips, num_crops and max_retries must be >= 1")
        if not samples:
            raise ValueError("VideoClipDataset needs at least one sample")
        self.samples = list(samples)
        self.modality = modality
        self.default_spec = ClipSpec(num_frames, crop_size, stride)
        self.train = train
        self.num_clips = 1 if train else num_clips
        self.num_crops = 1 if train else num_crops
        self.scale_range = tuple(scale_range) if scale_range is not None else views.default_scale_range(crop_size)
        if self.scale_range[0] > self.scale_range[1]:
            raise ValueError(f"scale_range {self.scale_range} is not (min, max)")
        self.flow_root = Path(flow_root) if flow_root is not None else None
        self.data_root = data_root
        self.sampler = sampler
        self.seed = seed
        self.max_retries = max_retries
        self.hflip = hflip  # off for data whose classes depend on left/right (synthetic motion, SSv2)
        self.mean, self.std, self.flow_scale = tuple(mean), tuple(std), float(flow_scale)
        self.protocol = protocol  # test views: which frames and crops (default: vidact's own)
        self._skipped = multiprocessing.Value("q", 0)  # shared with forked/spawned workers
        self._epoch = multiprocessing.Value("q", 0)
        self._counts: dict[tuple[str, bool], int] = {}
        self._rates: dict[str, float] = {}
        self._sources: dict[str, str] = {}
        self._flow_dirs: dict[int, Path] = {}
        self._bad: dict[int, str] = {}
        self._logged: set[int] = set()

    # ------------------------------------------------------------------ bookkeeping
    @property
    def views_per_video(self) -> int:
        return self.num_clips * self.num_crops

    def __len__(self) -> int:
        return len(self.samples) * self.views_per_video

    @property
    def skipped(self) -> int:
        """Unreadable samples met so far (every failed read, summed over all workers)."""
        return int(self._skipped.value)

    def set_epoch(self, epoch: int) -> None:
        """Training augmentation depends on (seed, epoch, item); visible to persistent workers."""
        self._epoch.value = int(epoch)

    def view_of(self, index: int) -> tuple[int, int, int]:
        """(video, clip, crop) of item ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} out of range ({len(self)} items)")
        video, view = divmod(index, self.views_per_video)
        clip, crop = divmod(view, self.num_crops)
        return video, clip, crop

    # ------------------------------------------------------------------ sources
    def _source(self, path: str) -> str:
        if path not in self._sources:
            self._sources[path] = detect_source(path)
        return self._sources[path]

    def _count(self, path: str, is_flow: bool, known: int | None = None) -> int:
        """Frames (or flow fields) of ``path``: ``known`` when the list gave it, else probed once."""
        if known is not None:
            return known
        if (path, is_flow) not in self._counts:
            kind = None if is_flow else self._source(path)
            if is_flow:
                n = flowio.count_flow(path)
            elif kind == VIDEO:
                info = probe(path)
                n, self._rates[path] = info.num_frames, info.fps
            elif kind == FRAMES:
                n = frames.count_frames(path)
            else:
                raise VideoDecodeError(path, "is a flow folder, expected a video or frame folder")
            if n < 1:
                raise VideoDecodeError(path, "no frames")
            self._counts[(path, is_flow)] = n
        return self._counts[(path, is_flow)]

    def _fps(self, path: str) -> float:
        """Frame rate of a video file (probed once); 0 for frame folders (a protocol then assumes 30)."""
        if path not in self._rates:
            self._rates[path] = probe(path, count_frames=False).fps if self._source(path) == VIDEO else 0.0
        return self._rates[path]

    def _flow_dir(self, video: int) -> str:
        sample = self.samples[video]
        if self.flow_root is None:
            return sample.path
        if video not in self._flow_dirs:
            self._flow_dirs[video] = flow_folder_for(sample.path, self.flow_root, self.data_root)
        return str(self._flow_dirs[video])

    def _read_rgb(self, path: str, indices: np.ndarray) -> torch.Tensor:
        kind = self._source(path)
        if kind == VIDEO:
            arr = decode_frames(path, indices)
        elif kind == FRAMES:
            arr = frames.read_frames(path, indices)
        else:
            raise VideoDecodeError(path, "is a flow folder, expected a video or frame folder")
        return torch.from_numpy(arr).permute(3, 0, 1, 2)  # (3, T, H, W) uint8

    def _read_flow(self, path: str, indices: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(flowio.read_flow(path, indices))).permute(1, 0, 2, 3)

    # ------------------------------------------------------------------ sampling
    def _spec(self, spec: ClipSpec | None) -> ClipSpec:
        return spec if spec is not None else self.default_spec

    def _indices(self, n: int, spec: ClipSpec, clip: int, rng: np.random.Generator, fps: float) -> np.ndarray:
        t, stride = spec.num_frames, spec.stride
        if self.train:
            if self.sampler == "random":
                return sampling.random_clip(n, t, stride, rng)
            if self.sampler == "uniform":
                return sampling.uniform_clips(n, t, stride, 1)[0]
            if self.sampler == "tsn":
                return sampling.tsn_segments(n, t, rng)
            return sampling.dense_clip(n, t, rng)
        if self.sampler == "tsn":
            return sampling.tsn_segments(n, t, offset=(clip + 0.5) / self.num_clips)
        if self.protocol is not None and self.sampler != "dense":
            return self.protocol.clip_indices(n, fps, t, stride, clip, self.num_clips)
        return sampling.uniform_clips(n, t, 1 if self.sampler == "dense" else stride, self.num_clips)[clip]

    def _spatial(self, spec: ClipSpec, crop: int, rng: np.random.Generator) -> views.SpatialParams:
        if not self.train:
            if self.protocol is not None:
                return self.protocol.view(crop, self.num_crops, spec.crop_size)
            return views.eval_view(spec.crop_size, crop, self.num_crops)
        return views.train_view(
            rng, spec.crop_size, self.scale_range, base_crop_size=self.default_spec.crop_size, hflip=self.hflip
        )

    def _transform(self, x: torch.Tensor, p: views.SpatialParams, is_flow: bool) -> torch.Tensor:
        x = views.apply_view(x, p, is_flow=is_flow)
        if is_flow:
            return transforms.normalize_flow(x, self.flow_scale).contiguous()
        return transforms.normalize(x, self.mean, self.std).contiguous()

    # ------------------------------------------------------------------ items
    def _plan(self, video: int, clip: int, crop: int, spec: ClipSpec, rng: np.random.Generator) -> ClipPlan:
        sample = self.samples[video]
        streams, counts = [], []
        if self.modality in ("rgb", "rgb+flow"):
            streams.append((sample.path, False))
            counts.append(self._count(sample.path, False, sample.num_frames))
        if self.modality in ("flow", "rgb+flow"):
            streams.append((self._flow_dir(video), True))
            counts.append(self._count(streams[-1][0], True))
        timed = self.protocol is not None and not self.train and self.modality != "flow"
        fps = self._fps(sample.path) if timed else 0.0  # a protocol samples by time
        indices = self._indices(min(counts), spec, clip, rng, fps)
        return ClipPlan(video, tuple(streams), indices, self._spatial(spec, crop, rng))

    def _item_rng(self, index: int, attempt: int) -> np.random.Generator:
        epoch = int(self._epoch.value) if self.train else 0
        return np.random.default_rng([self.seed, epoch, index, attempt])

    def plan(self, key: int | tuple[int, ClipSpec]) -> ClipPlan:
        """What item ``key`` reads (frame indices) and how it is scaled, cropped and flipped,
        assuming its own video is readable."""
        index, spec = key if isinstance(key, tuple) else (key, None)
        video, clip, crop = self.view_of(int(index))
        return self._plan(video, clip, crop, self._spec(spec), self._item_rng(int(index), 0))

    def _read(self, plan: ClipPlan) -> list[torch.Tensor]:
        """The raw streams of a plan (uint8 RGB, float flow); raises only read/decode errors."""
        return [
            self._read_flow(path, plan.indices) if is_flow else self._read_rgb(path, plan.indices)
            for path, is_flow in plan.streams
        ]

    def _replacement(self, index: int, attempt: int, failed: int) -> int:
        """A deterministic stand-in (never ``failed`` itself) for item ``index`` after ``attempt`` failures."""
        if len(self.samples) == 1:
            return 0
        rng = np.random.default_rng([self.seed, index, attempt, 0x5EED])
        other = int(rng.integers(len(self.samples) - 1))
        return other + 1 if other >= failed else other

    def _record_failure(self, video: int, reason: str) -> None:
        with self._skipped.get_lock():
            self._skipped.value += 1
        if video not in self._logged:
            self._logged.add(video)
            logger.warning("unreadable sample %s: %s (replaced by another sample)", self.samples[video].path, reason)

    def __getitem__(self, key: int | tuple[int, ClipSpec]) -> dict:
        index, spec = key if isinstance(key, tuple) else (key, None)
        index = int(index)
        spec = self._spec(spec)
        video, clip, crop = self.view_of(index)
        failures: list[str] = []
        for attempt in range(self.max_retries):
            if video not in self._bad:
                try:  # only reading may fail here: a bug in sampling or a transform is raised, never hidden
                    plan = self._plan(video, clip, crop, spec, self._item_rng(index, attempt))
                    raws = self._read(plan)
                except READ_ERRORS as exc:  # unreadable input: decode, I/O, missing or empty files
                    self._bad[video] = _reason(exc)
                else:
                    streams = [
                        self._transform(raw, plan.params, is_flow) for raw, (_, is_flow) in zip(raws, plan.streams)
                    ]
                    out = streams[0] if len(streams) == 1 else streams
                    view = clip * self.num_crops + crop
                    return {"video": out, "label": self.samples[video].label, "index": video, "view": view}
            self._record_failure(video, self._bad[video])
            failures.append(f"{self.samples[video].path} ({self._bad[video]})")
            video = self._replacement(index, attempt, video)
        raise VidactError(f"{self.max_retries} unreadable samples in a row: " + "; ".join(failures))


def _reason(exc: BaseException) -> str:
    """One line saying why a sample could not be read."""
    if isinstance(exc, VideoDecodeError):
        return exc.reason
    return first_line(exc)
