"""Disk errors while publishing state: logged, retried at the next interval, trading unaffected.

Tests run as root here, and root writes into a chmod-ed read-only folder anyway, so the faults
are injected at the system calls ``execution.atomic`` makes, for paths in the state folder only:

- ``EROFS`` when the temp file is created (a read-only folder or file system),
- ``ENOSPC`` at ``fsync`` (the disk filled up while writing),
- ``EROFS`` at ``os.replace`` (the folder went read-only between create and rename).
"""
from __future__ import annotations

import errno
import json
import logging
import os
from typing import Dict, List, Optional

import pytest

import otel_diag
from dashboard import risk_panel
from execution import state_publish
from execution.clock import SimClock
from execution.config import AppConfig, DiagnosticsConfig
from execution.diagnostics_metrics import record_router_event
from execution.executor_live import RunHooks, RunOptions, run
from execution.state_publish import DIAGNOSTICS_FILE, DiagnosticsPublisher
from execution.diagnostics_document import STATUS_OK, STATUS_STALE
from execution.state_v7 import load_runtime_diagnostics_state
from otel_diag._log import RateLimitedLog

START = 1_767_571_200.0  # 2026-01-05T00:00:00Z
WALL = 1_767_600_000.0
MODES = ("erofs_create", "enospc_fsync", "erofs_replace")


class DiskFault:
    """Makes the state folder's writes fail in one of :data:`MODES` while ``mode`` is set."""

    def __init__(self, monkeypatch, folder) -> None:
        self.folder = os.path.realpath(os.fspath(folder))
        self.mode: Optional[str] = None
        self.attempts = 0  # writes attempted while failing
        real_open, real_fsync, real_replace = os.open, os.fsync, os.replace

        def inside(path) -> bool:
            try:
                return os.path.realpath(os.fspath(path)).startswith(self.folder + os.sep)
            except (TypeError, ValueError):
                return False

        def fake_open(path, flags, mode=0o777, *args, **kwargs):
            if self.mode == "erofs_create" and inside(path) and flags & os.O_CREAT:
                self.attempts += 1
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
            return real_open(path, flags, mode, *args, **kwargs)

        def fake_fsync(fd):
            if self.mode == "enospc_fsync" and inside(os.readlink(f"/proc/self/fd/{fd}")):
                self.attempts += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_fsync(fd)

        def fake_replace(src, dst, *args, **kwargs):
            if self.mode == "erofs_replace" and inside(dst):
                self.attempts += 1
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(dst))
            return real_replace(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "open", fake_open)
        monkeypatch.setattr(os, "fsync", fake_fsync)
        monkeypatch.setattr(os, "replace", fake_replace)


def temp_files(folder) -> List[str]:
    return [name for name in os.listdir(folder) if name.startswith(".tmp-")]


@pytest.fixture
def publish_log(monkeypatch) -> RateLimitedLog:
    """A fresh rate limiter for the publisher's log, so an earlier test's message cannot mute this one's."""
    log = RateLimitedLog(logging.getLogger("execution.state_publish"))
    monkeypatch.setattr(state_publish, "_log", log)
    return log


# -- the publisher -------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_publish_when_disk_fails_then_logged_retried_next_interval_old_file_kept_and_reader_says_stale(
        tmp_path, monkeypatch, caplog, publish_log, mode):
    # Arrange: one good publish
    clock = SimClock(START)
    wall = {"now": WALL}
    otel_diag.configure(clock=clock, env={}, instrument=False)
    interval = 60.0
    cfg = AppConfig(diagnostics=DiagnosticsConfig(publish_interval_seconds=interval))
    publisher = DiagnosticsPublisher(str(tmp_path), cfg, clock=clock, wall_clock=lambda: wall["now"])
    record_router_event()
    assert publisher.publish()
    good = (tmp_path / DIAGNOSTICS_FILE).read_bytes()
    disk = DiskFault(monkeypatch, tmp_path)
    disk.mode = mode

    # Act: a failing publish, a call inside the interval, then one at the next interval
    clock.set(clock() + interval)
    wall["now"] += interval
    with caplog.at_level(logging.WARNING, logger="execution.state_publish"):
        first = publisher.maybe_publish()
        clock.set(clock() + interval / 2)
        within_interval = publisher.maybe_publish()
        attempts_within = disk.attempts
        clock.set(clock() + interval / 2)
        wall["now"] += 4 * interval
        next_interval = publisher.maybe_publish()

    # Assert: logged, counted, retried once per interval, nothing left behind, old file intact
    assert (first, within_interval, next_interval) == (False, False, False)
    assert attempts_within == 1 and disk.attempts == 2
    assert publisher.failures == 2 and publisher.publishes == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "execution.state_publish"]
    assert len(messages) == 1, messages  # rate-limited: one line, not one per failure
    assert "retrying at the next interval" in messages[0] and os.strerror(
        errno.ENOSPC if mode == "enospc_fsync" else errno.EROFS) in messages[0]
    assert temp_files(tmp_path) == []
    assert (tmp_path / DIAGNOSTICS_FILE).read_bytes() == good

    block = load_runtime_diagnostics_state(str(tmp_path), now=wall["now"])
    assert block["status"] == STATUS_STALE and block["stale"] is True
    assert block["evaluated_at"] == json.loads(good)["evaluated_at"]
    note = risk_panel.banner(block)
    assert note is not None and note.text.startswith("**Stale diagnostics**")
    assert {row.icon for row in risk_panel.liveness_rows(block)} == {risk_panel.ICON_UNKNOWN}
    assert risk_panel.status_badge(block).endswith("unknown")

    # Act: the disk recovers; the next interval's publish goes through
    disk.mode = None
    clock.set(clock() + interval)
    assert publisher.maybe_publish()
    assert load_runtime_diagnostics_state(str(tmp_path), now=wall["now"])["status"] == STATUS_OK
    assert temp_files(tmp_path) == []


# -- a whole run ---------------------------------------------------------------------------------------
CYCLES = 240
FAULT_FROM, FAULT_UNTIL = 80, 160  # cycles [80, 160) publish onto a failing disk


@pytest.fixture(scope="module")
def clean_journal(tmp_path_factory) -> bytes:
    """What a fault-free run trades (journal.jsonl is deterministic for a seed)."""
    folder = tmp_path_factory.mktemp("clean")
    try:
        run(RunOptions(state_dir=str(folder), cycles=CYCLES), RunHooks(configure_kwargs={"env": {}}))
    finally:
        otel_diag.shutdown(timeout_millis=2_000)
    return (folder / "journal.jsonl").read_bytes()


@pytest.mark.parametrize("mode", ["erofs_replace", "enospc_fsync"])
def test_run_when_disk_fails_mid_run_then_all_cycles_trade_publishing_resumes_and_no_temp_files(
        tmp_path, monkeypatch, caplog, publish_log, clean_journal, mode):
    # Arrange: the disk fails for cycles [80, 160); the publish interval is one bar, and every one is written
    # (no replay write cadence: this is about each write)
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    disk = DiskFault(monkeypatch, state_dir)
    published: List[Dict] = []
    cycle = {"index": -1}

    def on_cycle(result) -> None:  # called before the cycle's publish
        cycle["index"] = result.index
        disk.mode = mode if FAULT_FROM <= result.index < FAULT_UNTIL else None

    def on_publish(doc: dict) -> None:
        published.append({"cycle": cycle["index"], "final": doc["service"]["state"] == "stopped"})

    # Act
    with caplog.at_level(logging.WARNING, logger="execution.state_publish"):
        summary = run(RunOptions(state_dir=str(state_dir), cycles=CYCLES, replay_min_write_seconds=0),
                      RunHooks(on_cycle=on_cycle, on_publish=on_publish, configure_kwargs={"env": {}}))

    # Assert: trading untouched
    assert summary.cycles == CYCLES
    assert (state_dir / "journal.jsonl").read_bytes() == clean_journal
    # every failing cycle's write failed, and was retried at the next one; publishing resumed at once
    cycles_published = [p["cycle"] for p in published if not p["final"]]
    assert not [c for c in cycles_published if FAULT_FROM <= c < FAULT_UNTIL]
    assert FAULT_FROM - 1 in cycles_published and FAULT_UNTIL in cycles_published
    assert disk.attempts == FAULT_UNTIL - FAULT_FROM
    assert published[-1]["final"] and summary.publishes == len(published)
    logged = [r for r in caplog.records if r.name == "execution.state_publish"]
    assert 1 <= len(logged) <= 2, [r.getMessage() for r in logged]  # rate-limited
    assert temp_files(state_dir) == []
    doc = json.loads((state_dir / DIAGNOSTICS_FILE).read_text(encoding="utf-8"))
    assert doc["service"]["state"] == "stopped"
    assert json.loads((state_dir / "positions.json").read_text(encoding="utf-8"))["positions"] is not None


def test_run_when_disk_still_read_only_at_the_end_then_run_returns_and_telemetry_shut_down(
        tmp_path, monkeypatch, publish_log):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    disk = DiskFault(monkeypatch, state_dir)

    def on_cycle(result) -> None:
        disk.mode = "erofs_replace" if result.index >= 20 else None

    summary = run(RunOptions(state_dir=str(state_dir), cycles=40),
                  RunHooks(on_cycle=on_cycle, configure_kwargs={"env": {}}))

    assert summary.cycles == 40
    assert otel_diag.current() is None
