"""Shared by the otel_diag unit tests: a settable clock at a fixed start."""
from __future__ import annotations

import pytest

T0 = 1_767_571_200.0


class Clock:
    """A clock the test moves by setting ``now``."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()
