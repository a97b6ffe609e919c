"""Named pretrained checkpoints published by PySlowFast, PyTorchVideo and torchvision.

Every URL and figure is taken from the publisher's own page: PySlowFast's ``MODEL_ZOO.md``
(facebookresearch/SlowFast), PyTorchVideo's ``docs/source/model_zoo.md`` (facebookresearch/pytorchvideo)
and torchvision's ``GoogLeNet_Weights.IMAGENET1K_V1`` (pytorch/vision). None of these publishers gives a
full SHA-256; torchvision's file name carries the first 8 hex digits of it, which are checked. For the
others the digest measured at the first download is recorded in the cache and checked afterwards.

``arch`` is the vidact architecture a checkpoint loads into; ``None`` marks a published model that
vidact does not implement (ResNet-50 I3D and C2D: vidact's ``i3d`` is the Inception-v1 I3D), listed so
that a user asking for it gets a clear refusal.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass

from vidact.errors import UsageError

PYSLOWFAST_PAGE = "https://github.com/facebookresearch/SlowFast/blob/main/MODEL_ZOO.md"
PYTORCHVIDEO_PAGE = "https://github.com/facebookresearch/pytorchvideo/blob/main/docs/source/model_zoo.md"
TORCHVISION_PAGE = "https://pytorch.org/vision/stable/models/generated/torchvision.models.googlenet.html"
_PYSF = "https://dl.fbaipublicfiles.com/pyslowfast"
_PTV = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    arch: str | None  # the vidact architecture, None when vidact has no such model
    source: str  # pyslowfast | pytorchvideo | torchvision
    dataset: str
    top1: float  # published top-1 (%) at ``views``
    views: str  # test views the top-1 was measured with
    url: str
    sha256: str = ""  # full digest or a published prefix; "" when the publisher gives none
    frames: str = ""  # frame length x sample rate
    format: str = ""  # file format: pyslowfast .pyth, pyslowfast-caffe2 .pkl, pytorchvideo .pyth, torchvision
    page: str = ""
    note: str = ""
    test_crop: int = 0  # the crop (and short side) the published figure was tested at; 0: not a video test
    protocol: str = ""  # the test protocol the figure comes from (vidact.data.protocols)

    def to_dict(self) -> dict:
        return asdict(self)


# TEST_CROP_SIZE of the publishers' configs (PySlowFast configs/Kinetics/*.yaml, which PyTorchVideo's
# zoo was also tested with): X3D-XS/S 182, X3D-M 256, X3D-L 356, every SlowFast/I3D/C2D R50/R101 256.
TEST_CROPS = {"x3d-xs": 182, "x3d-s": 182, "x3d-m": 256, "x3d-l": 356}
RESNET_TEST_CROP = 256


def _pysf_x3d(size: str, top1_10: float, top1_30: float, frames: str) -> ZooEntry:
    return ZooEntry(
        f"pyslowfast-x3d-{size}",
        f"x3d-{size}",
        "pyslowfast",
        "Kinetics-400",
        top1_30,
        "10 clips x 3 crops",
        f"{_PYSF}/x3d_models/x3d_{size}.pyth",
        frames=frames,
        format="pyslowfast",
        page=PYSLOWFAST_PAGE,
        note=f"{top1_10} with 10 views",
        test_crop=TEST_CROPS[f"x3d-{size}"],
        protocol="pyslowfast",
    )


def _ptv(name: str, arch: str | None, top1: float, file: str, frames: str, note: str = "") -> ZooEntry:
    return ZooEntry(
        f"pytorchvideo-{name}",
        arch,
        "pytorchvideo",
        "Kinetics-400",
        top1,
        "10 clips x 3 crops",
        f"{_PTV}/{file}",
        frames=frames,
        format="pytorchvideo",
        page=PYTORCHVIDEO_PAGE,
        note=note,
        test_crop=TEST_CROPS.get(f"x3d-{name.removeprefix('x3d-')}", RESNET_TEST_CROP),
        protocol="pytorchvideo",
    )


def _pysf_c2(name: str, arch: str | None, top1: float, file: str, frames: str, note: str = "") -> ZooEntry:
    return ZooEntry(
        f"pyslowfast-{name}",
        arch,
        "pyslowfast",
        "Kinetics-400",
        top1,
        "10 clips x 3 crops",
        f"{_PYSF}/model_zoo/kinetics400/{file}",
        frames=frames,
        format="pyslowfast-caffe2",
        page=PYSLOWFAST_PAGE,
        note=note,
        test_crop=RESNET_TEST_CROP,
        protocol="pyslowfast",
    )


_RESNET_I3D = "ResNet-50 I3D/C2D: not a vidact architecture (vidact's i3d is Inception-v1)"

ZOO: tuple[ZooEntry, ...] = (
    _pysf_x3d("xs", 68.7, 69.5, "4x12"),
    _pysf_x3d("s", 73.1, 73.5, "13x6"),
    _pysf_x3d("m", 75.1, 76.2, "16x5"),
    _pysf_x3d("l", 76.9, 77.5, "16x5"),
    _pysf_c2("slowfast-r50-4x16", "slowfast-r50-4x16", 75.6, "SLOWFAST_4x16_R50.pkl", "4x16"),
    _pysf_c2("slowfast-r50-8x8", "slowfast-r50-8x8", 77.0, "SLOWFAST_8x8_R50.pkl", "8x8"),
    _pysf_c2("i3d-r50-8x8", None, 73.5, "I3D_8x8_R50.pkl", "8x8", _RESNET_I3D),
    _pysf_c2("c2d-r50-8x8", None, 67.2, "C2D_NOPOOL_8x8_R50.pkl", "8x8", _RESNET_I3D),
    _ptv("x3d-xs", "x3d-xs", 69.12, "X3D_XS.pyth", "4x12"),
    _ptv("x3d-s", "x3d-s", 73.33, "X3D_S.pyth", "13x6"),
    _ptv("x3d-m", "x3d-m", 75.94, "X3D_M.pyth", "16x5"),
    _ptv("x3d-l", "x3d-l", 77.44, "X3D_L.pyth", "16x5"),
    _ptv("slowfast-r50-4x16", "slowfast-r50-4x16", 75.34, "SLOWFAST_4x16_R50.pyth", "4x16"),
    _ptv("slowfast-r50-8x8", "slowfast-r50-8x8", 76.94, "SLOWFAST_8x8_R50.pyth", "8x8"),
    _ptv("slowfast-r101-8x8", "slowfast-r101-8x8", 77.90, "SLOWFAST_8x8_R101.pyth", "8x8"),
    _ptv("i3d-r50-8x8", None, 73.27, "I3D_8x8_R50.pyth", "8x8", _RESNET_I3D),
    _ptv("c2d-r50-8x8", None, 71.46, "C2D_8x8_R50.pyth", "8x8", _RESNET_I3D),
    ZooEntry(
        "torchvision-googlenet",
        "i3d",
        "torchvision",
        "ImageNet-1k",
        69.778,
        "1 centre crop 224",
        "https://download.pytorch.org/models/googlenet-1378be20.pth",
        sha256="1378be20",
        format="torchvision",
        page=TORCHVISION_PAGE,
        note="2D GoogLeNet, inflated into i3d / i3d-flow (--pretrained imagenet)",
    ),
)

IMAGENET = "imagenet"  # --pretrained imagenet: the 2D ImageNet network an architecture inflates
_IMAGENET_FOR_FAMILY = {"i3d": "torchvision-googlenet"}


def zoo_names() -> list[str]:
    return [e.name for e in ZOO]


def get_zoo_entry(name: str) -> ZooEntry:
    """The zoo entry called ``name``; an unknown name is a one-line UsageError with close matches."""
    for entry in ZOO:
        if entry.name == name:
            return entry
    close = difflib.get_close_matches(name, zoo_names(), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see vidact models zoo"
    raise UsageError(f"unknown pretrained checkpoint {name!r}{hint}")


def imagenet_entry(arch: str, family: str) -> ZooEntry:
    """The 2D ImageNet checkpoint that ``arch`` inflates (``--pretrained imagenet``)."""
    name = _IMAGENET_FOR_FAMILY.get(family)
    if name is None:
        families = ", ".join(sorted(_IMAGENET_FOR_FAMILY))
        raise UsageError(
            f"--pretrained imagenet inflates 2D ImageNet weights for the {families} family only, "
            f"not {arch!r} ({family})"
        )
    return get_zoo_entry(name)


def published_test(arch: str, source: str = "") -> ZooEntry | None:
    """The zoo row of ``arch`` (from ``source``, PySlowFast first otherwise) whose test a checkpoint of
    that architecture reproduces; None when no video zoo row has that architecture."""
    rows = [e for e in ZOO if e.arch == arch and e.test_crop and (not source or e.source == source)]
    rows.sort(key=lambda e: e.source != "pyslowfast")
    return rows[0] if rows else None


def zoo_rows(arch: str | None = None) -> list[dict]:
    """Every entry as a dict (only those for ``arch`` when given)."""
    return [e.to_dict() for e in ZOO if arch is None or e.arch == arch]
