"""Test protocols: which frames and which crops make up the K clips x C crops of a video's test.

- ``vidact``: evenly spaced clip starts at the model's frame stride (:func:`sampling.uniform_clips`),
  short side scaled to the crop with OpenCV's area filter, crops along the long side.
- ``pyslowfast``: PySlowFast's Kinetics test loader (``kinetics.py``, ``decoder.py`` with PyAV,
  ``utils.spatial_sampling``): clips placed and subsampled by :func:`sampling.pyslowfast_test_clip`
  at 30 fps, the short side scaled to the test crop (bilinear on float pixels), then the left,
  centre and right crops (top, centre, bottom on a portrait frame), offsets rounded up.
- ``pytorchvideo``: PyTorchVideo's data API as PySlowFast's ``Ptvkinetics`` runs it for the
  PyTorchVideo model zoo: ``ConstantClipsPerVideoSampler`` (:func:`sampling.pytorchvideo_test_clip`),
  ``UniformTemporalSubsample``, ``ShortSideScale``, ``UniformCropVideo``: the same spatial views.

Both publishers test 10 clips x 3 crops at the crop their zoo rows were published at (X3D-XS and
X3D-S 182, X3D-M and SlowFast 256, X3D-L 356): with a crop larger than the training crop the model's
head slides its training pool window (:mod:`vidact.models.test_head`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from vidact.data import sampling, views
from vidact.errors import UsageError

VIDACT, PYSLOWFAST, PYTORCHVIDEO = "vidact", "pyslowfast", "pytorchvideo"
PROTOCOLS = (VIDACT, PYSLOWFAST, PYTORCHVIDEO)
PUBLISHERS = (PYSLOWFAST, PYTORCHVIDEO)
_CLIP_SAMPLERS = {PYSLOWFAST: sampling.pyslowfast_test_clip, PYTORCHVIDEO: sampling.pytorchvideo_test_clip}


@dataclass(frozen=True)
class EvalProtocol:
    """A test protocol with its view counts and sizes (``crop_size``/``short_side`` 0: the model's crop)."""

    name: str = VIDACT
    clips: int = 1
    crops: int = 1
    crop_size: int = 0
    short_side: int = 0  # 0: the crop size
    target_fps: float = sampling.TARGET_FPS  # the publishers' sampling rates are at this frame rate

    @property
    def publisher(self) -> bool:
        return self.name in PUBLISHERS

    def clip_indices(
        self, num_video_frames: int, fps: float, num_frames: int, stride: int, clip: int, num_clips: int
    ) -> np.ndarray:
        """Frame indices of test clip ``clip`` of ``num_clips`` (``fps`` 0: unknown, taken as 30)."""
        if not self.publisher:
            return sampling.uniform_clips(num_video_frames, num_frames, stride, num_clips)[clip]
        pick = _CLIP_SAMPLERS[self.name]
        return pick(num_video_frames, fps, num_frames, stride, clip, num_clips, self.target_fps)

    def view(self, crop: int, num_crops: int, crop_size: int) -> views.SpatialParams:
        """Spatial view ``crop`` of ``num_crops`` at ``crop_size`` (this protocol's own size when set)."""
        size = self.crop_size or crop_size
        return views.eval_view(size, crop, num_crops, short_side=self.short_side or size, publisher=self.publisher)

    def to_dict(self) -> dict:
        return asdict(self)


def make_protocol(
    name: str, *, clips: int | None = None, crops: int | None = None, crop_size: int = 0, short_side: int = 0
) -> EvalProtocol:
    """The protocol ``name`` (publishers: 10 clips x 3 crops by default), checked; one-line UsageErrors."""
    if name not in PROTOCOLS:
        raise UsageError(f"unknown test protocol {name!r}; choose {', '.join(PROTOCOLS)}")
    publisher = name in PUBLISHERS
    clips = clips if clips is not None else (10 if publisher else 1)
    crops = crops if crops is not None else (3 if publisher else 1)
    if clips < 1 or crops < 1:
        raise UsageError(f"--clips and --crops must be at least 1, got {clips} and {crops}")
    if publisher and crops not in (1, 3):
        raise UsageError(f"the {name} protocol takes 1 (centre) or 3 (left, centre, right) crops, got {crops}")
    if crop_size < 0 or short_side < 0 or (short_side and crop_size and short_side < crop_size):
        raise UsageError(f"the short side ({short_side}) must be at least the crop ({crop_size})")
    return EvalProtocol(name, clips, crops, crop_size, short_side)
