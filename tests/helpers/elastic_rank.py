"""``vidact train`` as one torchrun rank that dies once: ``python elastic_rank.py DIE_RANK DIE_STEP ARGS...``.

Rank DIE_RANK SIGKILLs itself while its DIE_STEP-th step runs, in the group's first start only, as a
lost node or an out-of-memory kill would end it; torchrun (``--max-restarts``) then restarts the group.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.step_hooks import at_step  # noqa: E402
from helpers.tiny_model import register_tiny  # noqa: E402
from vidact.cli.main import main  # noqa: E402
from vidact.runtime.distributed import launch_env  # noqa: E402

die_rank, die_step, args = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
register_tiny()
env = launch_env()
if env.rank == die_rank and env.restart_count == 0:
    at_step(die_step, lambda: os.kill(os.getpid(), signal.SIGKILL))
main(args)
