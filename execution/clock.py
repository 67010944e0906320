"""The one injectable clock: a ``Callable[[], float]`` returning Unix seconds.

Usage::

    clock = SimClock(start=1767571200.0)   # replay: time is the bar clock
    clock.set(1767571260.0)
    clock()                                # 1767571260.0
    wall_clock()                           # realtime: time.time()
"""
from __future__ import annotations

import time

wall_clock = time.time


class SimClock:
    """A settable clock for replay; it never moves backwards."""

    __slots__ = ("_now",)

    def __init__(self, start: float) -> None:
        self._now = float(start)

    def __call__(self) -> float:
        return self._now

    def set(self, ts: float) -> None:
        if ts > self._now:
            self._now = float(ts)
