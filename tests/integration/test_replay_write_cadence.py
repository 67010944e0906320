"""The publisher's write cadence: every interval of engine time is a tick whose document reaches ``on_publish``;
in a replay the files are rewritten at most every ``REPLAY_MIN_WRITE_SECONDS`` of wall time, and always at the end;
at realtime pace every tick writes (docs/state_files.md)."""
from __future__ import annotations

import json
from typing import Dict, List

import pytest

import otel_diag
from execution.clock import SimClock
from execution.config import AppConfig, DiagnosticsConfig
from execution.diagnostics_document import DIAGNOSTICS_FILE, JOURNAL_FILE
from execution.executor_live import RunHooks, RunOptions, run
from execution.state_publish import REPLAY_MIN_WRITE_SECONDS, DiagnosticsPublisher
from tests.fixtures.config import SHIPPED_CONFIG, shipped_config

START = 1767571200.0  # 2026-01-05T00:00:00Z


WALL = 1_800_000_000.0  # where the hand-moved wall clock starts (a SimClock)


@pytest.fixture
def clock():
    c = SimClock(START)
    otel_diag.configure(clock=c, env={})
    yield c
    otel_diag.shutdown()


def _publisher(tmp_path, clock, wall, seen: List[Dict], min_write: float = REPLAY_MIN_WRITE_SECONDS):
    def on_publish(doc: dict) -> None:  # called after the tick's write, if there was one
        on_disk = json.loads((tmp_path / DIAGNOSTICS_FILE).read_text(encoding="utf-8"))
        seen.append({"doc": doc, "on_disk": on_disk})

    cfg = AppConfig(diagnostics=DiagnosticsConfig(publish_interval_seconds=60))
    return DiagnosticsPublisher(str(tmp_path), cfg, clock=clock, wall_clock=wall, on_publish=on_publish,
                                min_write_seconds=min_write)


def test_ticks_when_wall_advances_less_than_the_cadence_then_every_tick_reaches_the_hook_and_writes_are_spaced(
        tmp_path, clock):
    # Arrange: a tick every engine minute, 0.1 s of wall time between ticks
    wall, seen = SimClock(WALL), []
    pub = _publisher(tmp_path, clock, wall, seen)

    # Act: 10 engine minutes
    written = []
    for minute in range(10):
        clock.set(START + 60 * minute)
        written.append(pub.maybe_publish())
        wall.set(wall() + 0.1)

    # Assert: the hook saw every tick, in engine order
    assert pub.ticks == 10 and len(seen) == 10
    assert [s["doc"]["evaluated_at"][11:16] for s in seen] == [f"00:{m:02d}" for m in range(10)]
    # the files were written at ticks 0, 3, 6, 9 (0.3 s apart, the first >= 0.25 s after the last write)
    assert [i for i, w in enumerate(written) if w] == [0, 3, 6, 9] and pub.publishes == 4
    for i, s in enumerate(seen):
        if written[i]:  # a written file is exactly the document of its tick
            assert s["on_disk"] == s["doc"]
        else:  # otherwise the file is the last written tick's, older in engine time
            last = max(j for j in range(i) if written[j])
            assert s["on_disk"] == seen[last]["doc"]


def test_final_publish_when_within_the_cadence_then_written_anyway(tmp_path, clock):
    wall, seen = SimClock(WALL), []
    pub = _publisher(tmp_path, clock, wall, seen)
    pub.maybe_publish()
    clock.set(START + 60)
    wall.set(wall() + 0.01)

    assert pub.maybe_publish() is False  # a tick, not written
    assert pub.publish(final=True) is True

    on_disk = json.loads((tmp_path / DIAGNOSTICS_FILE).read_text(encoding="utf-8"))
    assert on_disk["service"]["state"] == "stopped" and on_disk == seen[-1]["doc"]
    assert on_disk["evaluated_at"].startswith("2026-01-05T00:01:00")


def test_wall_clock_when_set_back_then_the_next_tick_writes(tmp_path, clock):
    wall_now, seen = [WALL], []
    pub = _publisher(tmp_path, clock, lambda: wall_now[0], seen)  # a wall clock that can step back (SimClock cannot)
    pub.maybe_publish()

    wall_now[0] -= 3600  # an NTP step back: no hour without writes
    clock.set(START + 60)

    assert pub.maybe_publish() is True and pub.publishes == 2


def test_min_write_zero_when_ticks_then_every_tick_writes(tmp_path, clock):
    wall, seen = SimClock(WALL), []
    pub = _publisher(tmp_path, clock, wall, seen, min_write=0.0)

    for minute in range(5):
        clock.set(START + 60 * minute)
        assert pub.maybe_publish() is True

    assert pub.publishes == pub.ticks == 5 and all(s["on_disk"] == s["doc"] for s in seen)


def test_replay_when_shipped_cadence_then_hook_sees_every_bar_trading_unchanged_and_last_file_is_the_final_document(
        tmp_path):
    # Arrange: the shipped config publishes every bar of engine time (60 s bars, 60 s interval)
    docs: List[dict] = []

    # Act: the same replay with the cadence, and writing every tick
    summary = run(RunOptions(config_path=SHIPPED_CONFIG, state_dir=str(tmp_path / "cadence"), cycles=300),
                  RunHooks(on_publish=docs.append, configure_kwargs={"tracing": False, "env": {}}))
    every = run(RunOptions(config_path=SHIPPED_CONFIG, state_dir=str(tmp_path / "every"), cycles=300,
                           replay_min_write_seconds=0),
                RunHooks(configure_kwargs={"tracing": False, "env": {}}))

    # Assert: one tick per bar, each handed to the hook, plus the final document
    assert summary.publish_ticks == 300 and len(docs) == 301
    assert every.publishes == every.publish_ticks + 1 == 301
    # the first tick and the final write, and what the wall cadence allowed of the other ticks
    assert 2 <= summary.publishes <= summary.publish_ticks + 1
    on_disk = json.loads((tmp_path / "cadence" / DIAGNOSTICS_FILE).read_text(encoding="utf-8"))
    assert on_disk == docs[-1] and on_disk["service"]["state"] == "stopped"
    # the final evaluation is the same with and without the cadence (up to wall-clock and process fields)
    final_every = json.loads((tmp_path / "every" / DIAGNOSTICS_FILE).read_text(encoding="utf-8"))
    assert on_disk["runtime_diagnostics"] == final_every["runtime_diagnostics"]
    assert on_disk["evaluated_at"] == final_every["evaluated_at"]
    # trading does not depend on when files are written
    assert (tmp_path / "cadence" / JOURNAL_FILE).read_bytes() == (tmp_path / "every" / JOURNAL_FILE).read_bytes()


def test_realtime_pace_when_ticks_then_every_tick_writes(tmp_path):
    # Arrange: a publish interval of 0.05 s of engine time, which at realtime pace is the wall clock
    config = shipped_config(tmp_path, diagnostics={"publish_interval_seconds": 0.05})

    # Act
    summary = run(RunOptions(config_path=config, state_dir=str(tmp_path / "state"), cycles=8, pace="realtime",
                             bar_interval=0.05),
                  RunHooks(configure_kwargs={"tracing": False, "env": {}}))

    # Assert: no write cadence at realtime pace — every tick wrote, then the final write
    assert summary.publish_ticks >= 1
    assert summary.publishes == summary.publish_ticks + 1
