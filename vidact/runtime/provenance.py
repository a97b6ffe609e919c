"""The environment a run was made in: vidact, Python, torch, CUDA, GPUs, and the git commit of a checkout."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ENV_FILE = "env.json"


def git_commit(folder: str | Path) -> dict | None:
    """``{"commit", "dirty"}`` when ``folder`` is inside a git checkout with git available, else None."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status)}


def environment() -> dict:
    """What produced a run: versions, devices and (from a source checkout) the commit."""
    import torch

    import vidact

    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    )
    package_root = Path(vidact.__file__).resolve().parent.parent
    record = {
        "vidact": vidact.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpus": gpus,
        "torch_threads": torch.get_num_threads(),
        "git": git_commit(package_root) if (package_root / ".git").exists() else None,
    }
    try:
        import torchvision

        record["torchvision"] = torchvision.__version__
    except ImportError:  # optional for this record
        record["torchvision"] = None
    return record


def write_environment(run_dir: str | Path) -> Path:
    """``RUN/env.json`` (atomically), next to ``config.toml``."""
    from vidact.io.atomic import atomic_write_text

    path = Path(run_dir) / ENV_FILE
    atomic_write_text(path, json.dumps(environment(), indent=2) + "\n")
    return path
