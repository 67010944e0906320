"""execution.clock: one injectable clock; replay time never moves backwards."""
from __future__ import annotations

import time

from execution.clock import SimClock, wall_clock
from tests.unit.execution.builders import T0


def test_sim_clock_when_created_then_reads_its_start():
    assert SimClock(T0)() == T0


def test_set_when_later_time_then_clock_moves_forward():
    clock = SimClock(T0)

    clock.set(T0 + 60)

    assert clock() == T0 + 60


def test_set_when_earlier_time_then_clock_stays():
    clock = SimClock(T0 + 60)

    clock.set(T0)

    assert clock() == T0 + 60


def test_sim_clock_when_int_start_then_returns_float():
    assert isinstance(SimClock(100)(), float)


def test_wall_clock_when_called_then_unix_seconds_now():
    before = time.time()

    now = wall_clock()

    assert before <= now <= time.time()
