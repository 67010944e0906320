"""The one injectable clock: a ``Callable[[], float]`` returning Unix seconds.

Usage::

    clock = SimClock(start=1767571200.0)   # replay: time is the bar clock
    clock.set(1767571260.0)
    clock()                                # 1767571260.0
    wall_clock()                           # realtime: time.time()
    on_calendar(1767571200.0)              # True: a time the engine can stamp
    iso_seconds("2026-01-05T00:00:00Z")    # 1767571200.0
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

wall_clock = time.time

# The calendar every time the engine stamps lies in: from the Unix epoch to the last second that
# datetime — and so the journal's ISO times — can write. Inputs are checked against it at the edge.
EARLIEST_SECONDS = 0.0                  # 1970-01-01T00:00:00Z
LATEST_SECONDS = 253_402_300_799.0      # 9999-12-31T23:59:59Z


def on_calendar(ts: float, latest: float = LATEST_SECONDS) -> bool:
    """Whether ``ts`` (Unix seconds) is a time from the epoch to ``latest`` (NaN and infinities are not)."""
    return isinstance(ts, (int, float)) and not isinstance(ts, bool) and EARLIEST_SECONDS <= ts <= latest


def iso_seconds(text: str) -> float:
    """An ISO-8601 time (naive = UTC, ``Z`` allowed) as Unix seconds; ValueError when it is none or off the Unix line."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    try:
        return dt.timestamp()
    except OverflowError:
        raise ValueError("not a time on the Unix line") from None


def iso(ts: float) -> str:
    """Unix seconds as ISO-8601 UTC with microseconds, e.g. 2026-01-05T00:01:00.000000+00:00: every time in a file."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds")


def iso_z(ts: float) -> str:
    """A time on the calendar as ISO-8601 UTC to the second, e.g. ``9999-12-31T23:59:59Z`` (for messages)."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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
