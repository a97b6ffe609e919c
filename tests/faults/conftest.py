"""Fixtures of the fault suite: ``faults`` makes any bad input in a fresh temporary folder."""

from __future__ import annotations

import pytest
from faultkit import Faults


@pytest.fixture
def faults(tmp_path) -> Faults:
    return Faults(tmp_path / "faults")
