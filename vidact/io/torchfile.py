"""Reading a file written by ``torch.save`` without running any pickled code (``weights_only=True``)."""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path

import torch

from vidact.errors import CheckpointError, first_line


def load_weights_only(path: str | Path) -> object:
    """The object in ``path``, on the CPU, read with ``weights_only=True``.

    Every failure is one :class:`CheckpointError` line naming the file: missing, refused (the
    file holds pickled Python objects, which weights-only loading does not run), or truncated
    and corrupt (with the reader's first line, terminal codes stripped).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # a pickle of another protocol makes torch warn first
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = first_line(exc)
        if "weights only" in reason.lower() or "weights_only" in reason.lower():
            raise CheckpointError(
                f"{path}: refused: the file holds pickled Python objects, which weights-only loading does not run"
            ) from None
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({reason})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({first_line(exc)})") from None
