"""The journal is the trade record; it is never lost (issue 12, item 1).

Every test starts from a real fault, not a stand-in: a symbolic link, FIFO, device or folder where a
state file belongs; a second executor process on the same state dir; SIGKILL; a tmpfs mounted by the
test and sized so the journal fills it mid-run; a write SIGKILLed between its temp file and its rename.
The executor runs as users run it (``python -m execution``), except where a test needs to see inside.
The tests run as root (mounting a tmpfs needs it; they fail, never skip, otherwise).
"""
from __future__ import annotations

import errno
import json
import os
import re
import signal
import stat
import subprocess
import sys
from typing import Callable, List, Optional

import pytest

import otel_diag
from execution.diagnostics_document import (DIAGNOSTICS_FILE, JOURNAL_FILE, LOCK_FILE, POSITIONS_FILE, SERVICE_FAILED,
                                            parse_iso)
from execution.executor_live import RunHooks, RunOptions, UsageError, run
from execution.journal import FSYNC_ALWAYS, FSYNC_NEVER, FSYNC_POLICIES, FSYNC_PUBLISH, Journal, JournalError
from execution.market_data import CSV_COLUMNS
from execution.state_dir import HEADROOM_BYTES, RESERVE_BYTES, RESERVE_FILE, StateDir
from tests.fixtures.cli import HANG_GUARD_SECONDS, ROOT, cli_env, run_module
from tests.unit.execution.builders import order

ENDLESS = "1000000"        # --cycles for a run the test stops (SIGKILL) or the disk stops
ROTATED = re.compile(r"journal\.\d{8}T\d{6}Z(-\d+)?\.jsonl")
SMALL_DISK_BYTES = RESERVE_BYTES + HEADROOM_BYTES + 192 * 1024  # the reserve, the headroom, ≈ 180 KiB of journal
T0 = 1_767_571_200.0       # 2026-01-05T00:00:00Z


# -- helpers ---------------------------------------------------------------------------------------------
def _executor(args: List[str]) -> subprocess.CompletedProcess:
    return run_module("execution", *args)


def _start(args: List[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "execution", *args], cwd=ROOT, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=HANG_GUARD_SECONDS)


def _wait_for(proc: subprocess.Popen, predicate: Callable[[], object]) -> object:
    """Poll ``predicate`` while ``proc`` runs (bounded by HANG_GUARD_SECONDS); its first truthy value."""
    for _ in range(HANG_GUARD_SECONDS * 50):
        value = predicate()
        if value:
            return value
        try:
            proc.wait(timeout=0.02)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"executor exited early ({proc.returncode}): {proc.stderr.read()}")
    pytest.fail("the executor never got there")


def _one_error_line(proc: subprocess.CompletedProcess, code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
    return proc.stderr


def _records(path) -> List[dict]:
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), "the journal ends inside a record"
    return [json.loads(line) for line in data.splitlines()]


def _read_json(path) -> Optional[dict]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def _rotated(folder) -> List[str]:
    return sorted(name for name in os.listdir(folder) if ROTATED.fullmatch(name))


@pytest.fixture(scope="module")
def clean_journal(tmp_path_factory) -> bytes:
    """What a fault-free run writes for the default seed (long enough to cover every test's run)."""
    folder = tmp_path_factory.mktemp("clean")
    done = _executor(["--no-instrument", "--cycles", "2000", "--state-dir", str(folder)])
    assert done.returncode == 0, done.stderr
    return (folder / JOURNAL_FILE).read_bytes()


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(size)``: a real tmpfs of ``size`` bytes, mounted for the test and unmounted after it."""
    if os.geteuid() != 0:
        pytest.fail("mounting a real tmpfs needs root: run the reliability tests as root (make test in CI does)")
    mounted = []

    def mount(size: int):
        mount_point = tmp_path / f"disk{len(mounted)}"
        mount_point.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mount_point)],
                       check=True, capture_output=True)
        mounted.append(mount_point)
        return mount_point

    try:
        yield mount
    finally:
        for mount_point in mounted:
            subprocess.run(["umount", str(mount_point)], check=True, capture_output=True)


@pytest.fixture
def small_disk(tmpfs):
    return tmpfs(SMALL_DISK_BYTES)


def _fill(path) -> int:
    """Another process's file taking every free byte of its file system; its size."""
    size = 0
    with open(path, "wb", buffering=0) as fh:
        for chunk in (64 * 1024, 4096, 1):
            try:
                while True:
                    size += fh.write(b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return size


# -- 1. nothing is written through a link, a FIFO, a device or a folder ------------------------------------
def _plant(path, kind: str, victim) -> str:
    """Put a ``kind`` where a state file belongs; what the error line must call it."""
    if kind == "symlink":
        os.symlink(victim, path)
        return f"is a symbolic link to '{victim}'"
    if kind == "fifo":
        os.mkfifo(path)
        return "is a FIFO"
    if kind == "directory":
        os.mkdir(path)
        return "is a directory"
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # the numbers of /dev/null
    return "is a character device"


@pytest.mark.parametrize("name, kind", [
    *[(name, kind) for name in (JOURNAL_FILE, DIAGNOSTICS_FILE, POSITIONS_FILE, LOCK_FILE)
      for kind in ("symlink", "fifo", "directory")],
    (JOURNAL_FILE, "device"), (LOCK_FILE, "device"),
])
def test_start_when_state_entry_is_not_a_regular_file_then_exit_2_naming_it_and_nothing_written_through(
        tmp_path, name, kind):
    # Arrange: someone else's file, 0600, that a link would lead to
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious\n")
    victim.chmod(0o600)
    state = tmp_path / "state"
    state.mkdir()
    what = _plant(state / name, kind, victim)
    planted = stat.S_IFMT(os.lstat(state / name).st_mode)

    # Act: never blocks on a FIFO (the run would time out here)
    proc = _executor(["--cycles", "5", "--state-dir", str(state)])

    # Assert: refused, the entry left as it was, nothing reached through it, no journal started
    err = _one_error_line(proc, 2)
    assert f"{state / name}: {what}" in err
    assert stat.S_IFMT(os.lstat(state / name).st_mode) == planted
    assert victim.read_bytes() == b"precious\n" and stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert name == JOURNAL_FILE or not os.path.lexists(state / JOURNAL_FILE)


# -- 2. one executor per state dir -------------------------------------------------------------------------
def test_second_executor_when_first_holds_the_state_dir_then_refused_naming_pid_and_start_until_holder_killed(
        tmp_path):
    # Arrange: a first executor, paced at 20 bars a second, running far longer than the test
    state = tmp_path / "state"
    holder = _start(["--no-instrument", "--pace", "realtime", "--bar-interval", "0.05", "--cycles", ENDLESS,
                     "--state-dir", str(state)])
    try:
        lock_line = _wait_for(holder, lambda: (state / LOCK_FILE).is_file() and (state / LOCK_FILE).read_text())
        _wait_for(holder, lambda: (state / JOURNAL_FILE).is_file() and (state / JOURNAL_FILE).stat().st_size)

        # Act: a second executor on the same state dir
        second = _executor(["--no-instrument", "--cycles", "5", "--state-dir", str(state)])

        # Assert: refused with one line naming the holder; the holder's journal not moved
        err = _one_error_line(second, 2)
        pid, since = lock_line.split()
        assert pid == str(holder.pid) and parse_iso(since) is not None
        assert f"pid {holder.pid}, since {since}" in err and "another executor" in err
        assert _rotated(state) == [] and holder.poll() is None

        # Act: the holder dies without any chance to clean up; the kernel drops its lock
        holder.kill()
        holder.wait(timeout=HANG_GUARD_SECONDS)
        killed_journal = (state / JOURNAL_FILE).read_bytes()
        third = _executor(["--no-instrument", "--cycles", "5", "--state-dir", str(state)])
    finally:
        _kill(holder)

    # Assert: the next start runs, and keeps the dead holder's journal
    assert third.returncode == 0, third.stderr
    (rotated,) = _rotated(state)
    assert (state / rotated).read_bytes() == killed_journal
    assert (state / LOCK_FILE).is_file()  # released, not deleted


# -- 3. a restart never truncates history ------------------------------------------------------------------
def test_restart_when_journal_holds_the_last_run_then_moved_aside_and_journal_is_this_runs_record(tmp_path):
    # Arrange: a finished run
    state = tmp_path / "state"
    args = ["--no-instrument", "--cycles", "40", "--seed", "3", "--state-dir", str(state)]
    first = _executor(args)
    assert first.returncode == 0, first.stderr
    last_run = (state / JOURNAL_FILE).read_bytes()

    # Act: restart twice (possibly within the same second: the names must still differ)
    second = _executor(args)
    third = _executor(args)

    # Assert: both earlier journals kept byte for byte; journal.jsonl is this run's record, as from a fresh dir
    assert second.returncode == 0 and third.returncode == 0, (second.stderr, third.stderr)
    rotated = _rotated(state)
    assert len(rotated) == 2
    assert [(state / name).read_bytes() for name in rotated] == [last_run, last_run]
    assert (state / JOURNAL_FILE).read_bytes() == last_run  # same seed, same record
    kept = [re.search(r"^previous journal kept as (.+)$", p.stdout, re.M).group(1) for p in (second, third)]
    assert sorted(os.path.basename(path) for path in kept) == rotated


def test_rotation_when_same_second_twice_then_collision_suffix_and_nothing_overwritten(tmp_path):
    # Arrange: two journals moved aside by starts in the same wall-clock second
    for n in range(2):
        (tmp_path / JOURNAL_FILE).write_text(f'{{"run":{n}}}\n', encoding="utf-8")
        state = StateDir.acquire(str(tmp_path), clock=lambda: T0 + 0.25, reserve_bytes=0)
        try:
            state.rotate_journal()
        finally:
            state.release()

    # Assert
    assert _rotated(tmp_path) == ["journal.20260105T000000Z-1.jsonl", "journal.20260105T000000Z.jsonl"]
    assert (tmp_path / "journal.20260105T000000Z.jsonl").read_text(encoding="utf-8") == '{"run":0}\n'
    assert (tmp_path / "journal.20260105T000000Z-1.jsonl").read_text(encoding="utf-8") == '{"run":1}\n'


def _bad_csv(tmp_path) -> List[str]:
    data = tmp_path / "bars.csv"
    data.write_text(",".join(CSV_COLUMNS) + "\n1767571200,BTCUSDT,100,101,99,oops,1\n", encoding="utf-8")
    return ["--data", str(data)]


def _bad_config(tmp_path) -> List[str]:
    cfg = tmp_path / "config.json"
    cfg.write_text('{"router": {"twap_slices": 0}}', encoding="utf-8")
    return ["--config", str(cfg)]


@pytest.mark.parametrize("bad", [_bad_csv, _bad_config], ids=["csv", "config"])
def test_start_when_input_bad_then_exit_2_and_last_journal_untouched(tmp_path, bad):
    # Arrange: the journal of a finished run
    state = tmp_path / "state"
    assert _executor(["--no-instrument", "--cycles", "20", "--state-dir", str(state)]).returncode == 0
    before = (state / JOURNAL_FILE).read_bytes()

    # Act
    proc = _executor(["--cycles", "20", "--state-dir", str(state), *bad(tmp_path)])

    # Assert
    _one_error_line(proc, 2)
    assert (state / JOURNAL_FILE).read_bytes() == before and _rotated(state) == []


def test_start_when_telemetry_set_up_fails_then_last_journal_untouched_and_telemetry_and_lock_released(tmp_path):
    # Arrange: the journal of a finished run, and a metric reader another provider already owns
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    state = tmp_path / "state"
    run(RunOptions(state_dir=str(state), cycles=20, instrument=False))
    before = (state / JOURNAL_FILE).read_bytes()
    taken = InMemoryMetricReader()
    MeterProvider(metric_readers=[taken])

    # Act
    with pytest.raises(Exception, match="registered already"):
        run(RunOptions(state_dir=str(state), cycles=20), RunHooks(metric_readers=[taken], configure_kwargs={"env": {}}))

    # Assert: nothing moved, nothing left running, the state dir free for the next start
    assert (state / JOURNAL_FILE).read_bytes() == before and _rotated(state) == []
    assert otel_diag.current() is None
    assert run(RunOptions(state_dir=str(state), cycles=5, instrument=False)).cycles == 5


# -- 4. write-ahead: no state file counts a record the journal does not hold ----------------------------
@pytest.mark.parametrize("kill_after_orders", [10, 100, 400])
def test_sigkill_when_mid_run_then_diagnostics_never_counts_more_than_the_journal_holds(tmp_path, kill_after_orders):
    # Arrange: an instrumented replay publishing diagnostics.json every bar
    state = tmp_path / "state"
    proc = _start(["--cycles", ENDLESS, "--state-dir", str(state)])

    def orders_published() -> int:
        doc = _read_json(state / DIAGNOSTICS_FILE)
        total = doc["runtime_diagnostics"]["veto_counters"]["total_orders"] if doc else 0
        return total >= kill_after_orders

    # Act
    try:
        _wait_for(proc, orders_published)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=HANG_GUARD_SECONDS)
    finally:
        _kill(proc)

    # Assert: the journal ends on a complete record and holds at least what the document counts
    assert proc.returncode == -signal.SIGKILL
    counters = _read_json(state / DIAGNOSTICS_FILE)["runtime_diagnostics"]["veto_counters"]
    records = _records(state / JOURNAL_FILE)
    journal_orders = sum(r["type"] == "order" for r in records)
    journal_fills = sum(r["type"] == "fill" for r in records)
    assert counters["total_orders"] >= kill_after_orders
    assert journal_orders >= counters["total_orders"], (journal_orders, counters)
    assert journal_fills >= counters["router_events"].get("fill", 0), (journal_fills, counters)


def test_fsync_policies_when_run_then_same_journal_and_fsynced_as_promised(tmp_path, monkeypatch):
    # Arrange: count the fsyncs of the journal (the real call still happens)
    real_fdatasync = os.fdatasync
    syncs = {"n": 0}

    def counting_fdatasync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(os.sep + JOURNAL_FILE):
            syncs["n"] += 1
        return real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", counting_fdatasync)
    journals, counts = {}, {}

    # Act
    for policy in FSYNC_POLICIES:
        syncs["n"] = 0
        state = tmp_path / policy
        summary = run(RunOptions(state_dir=str(state), cycles=30, journal_fsync=policy),
                      RunHooks(configure_kwargs={"env": {}}))
        journals[policy] = (state / JOURNAL_FILE).read_bytes()
        records = len(_records(state / JOURNAL_FILE))
        counts[policy] = (syncs["n"], summary.publishes, records)

    # Assert: the policy changes when bytes reach the disk, never which bytes
    assert journals[FSYNC_PUBLISH] == journals[FSYNC_ALWAYS] == journals[FSYNC_NEVER] != b""
    assert counts[FSYNC_NEVER][0] == 0
    syncs_publish, publishes, _ = counts[FSYNC_PUBLISH]
    assert syncs_publish == publishes  # one before each publish while running, one at close
    syncs_always, _, records = counts[FSYNC_ALWAYS]
    assert syncs_always >= records


def test_run_when_fsync_policy_unknown_then_usage_error_one_line_and_nothing_created(tmp_path):
    with pytest.raises(UsageError, match="--journal-fsync: expected one of publish, always, never") as err:
        run(RunOptions(state_dir=str(tmp_path / "s"), journal_fsync="sometimes", instrument=False))

    assert "\n" not in str(err.value) and not (tmp_path / "s").exists()


# -- 5. a full disk stops trading cleanly ------------------------------------------------------------------
def test_journal_when_disk_fills_mid_run_then_exit_3_one_line_complete_records_and_failed_state(
        small_disk, clean_journal):
    # Act: a run far longer than the disk
    proc = _executor(["--cycles", ENDLESS, "--state-dir", str(small_disk)])

    # Assert: exit 3, one line, no traceback (the journal stopped first: no state write failed before it)
    err = _one_error_line(proc, 3)
    assert f"{small_disk / JOURNAL_FILE}: No space left on device; trading stopped" in err
    # the journal ends on a complete record, and holds exactly what a fault-free run wrote first
    journal = (small_disk / JOURNAL_FILE).read_bytes()
    assert len(journal) > 50_000 and journal.endswith(b"\n")
    assert clean_journal.startswith(journal)
    # the last diagnostics.json says why it stopped, and counts what the journal holds; positions.json was
    # written; nothing left behind
    doc = _read_json(small_disk / DIAGNOSTICS_FILE)
    records = _records(small_disk / JOURNAL_FILE)
    counters = doc["runtime_diagnostics"]["veto_counters"]
    assert (counters["total_orders"], counters["router_events"]["fill"]) == (
        sum(r["type"] == "order" for r in records), sum(r["type"] == "fill" for r in records))
    assert "; 0 records not written)" in err
    service = doc["service"]
    assert service["state"] == SERVICE_FAILED
    assert service["failure"] == f"{JOURNAL_FILE}: No space left on device"
    assert parse_iso(service["stopped_at"]) is not None
    assert set(_read_json(small_disk / POSITIONS_FILE)) == {"written_at", "positions", "tp_sl", "realized_pnl"}
    assert [n for n in os.listdir(small_disk) if n.startswith(".tmp-") or n == RESERVE_FILE] == []


def test_run_when_disk_fills_then_journal_error_raised_after_telemetry_shut_down_and_lock_released(small_disk):
    # Act
    with pytest.raises(JournalError) as err:
        run(RunOptions(state_dir=str(small_disk), cycles=int(ENDLESS)), RunHooks(configure_kwargs={"env": {}}))

    # Assert: the error says where the journal ends; telemetry is down; the state dir is free again
    assert err.value.kept_bytes == (small_disk / JOURNAL_FILE).stat().st_size
    assert err.value.reason == f"{JOURNAL_FILE}: No space left on device" and "\n" not in str(err.value)
    assert otel_diag.current() is None
    StateDir.acquire(str(small_disk), reserve_bytes=0).release()


def test_run_when_another_process_fills_the_disk_then_trading_stops_and_the_reserve_takes_the_failed_state(
        small_disk):
    # Arrange: an instrumented executor at 50 bars a second, trading (in realtime pace it publishes once a
    # minute of wall time: the first publish is at its first bar)
    proc = _start(["--pace", "realtime", "--bar-interval", "0.02", "--cycles", ENDLESS, "--state-dir", str(small_disk)])

    def trading() -> bool:
        journal = small_disk / JOURNAL_FILE
        return (small_disk / DIAGNOSTICS_FILE).exists() and journal.exists() and journal.stat().st_size > 0

    try:
        _wait_for(proc, trading)

        # Act: someone else takes every free byte
        filled = _fill(small_disk / "filler.bin")
        out, err = proc.communicate(timeout=HANG_GUARD_SECONDS)
    finally:
        _kill(proc)

    # Assert: stopped with one line; the last state says why, written into the space the reserve held
    assert filled > 0
    assert proc.returncode == 3 and "Traceback" not in err, err
    assert err.count("\n") == 1 and f"{JOURNAL_FILE}: No space left on device; trading stopped" in err, err
    _records(small_disk / JOURNAL_FILE)
    service = _read_json(small_disk / DIAGNOSTICS_FILE)["service"]
    assert (service["state"], service["failure"]) == (SERVICE_FAILED, f"{JOURNAL_FILE}: No space left on device")
    assert _read_json(small_disk / POSITIONS_FILE) is not None
    assert not (small_disk / RESERVE_FILE).exists() and (small_disk / "filler.bin").stat().st_size == filled


def test_journal_when_disk_fills_inside_a_record_then_cut_back_to_the_last_complete_record(tmpfs):
    # Arrange: a 64 KiB disk, no free-space margin: the write itself meets ENOSPC
    size = 64 * 1024
    disk = tmpfs(size)
    journal = Journal(str(disk / JOURNAL_FILE), fsync=FSYNC_NEVER)

    # Act: ten orders a flush until the disk is full
    with pytest.raises(JournalError) as err:
        for n in range(size):
            journal.order(order(quantity=1.0 + n / 7))
            if n % 10 == 9:
                journal.flush()

    # Assert: the partial write the disk took was cut off; every record kept is whole
    data = (disk / JOURNAL_FILE).read_bytes()
    assert len(data) == err.value.kept_bytes < size  # without the cut the file would fill the disk exactly
    assert data.endswith(b"\n") and len(_records(disk / JOURNAL_FILE)) == journal.orders - err.value.lost_records
    assert err.value.error.errno == errno.ENOSPC
    with pytest.raises(JournalError):  # and no more trading into a journal that failed
        journal.order(order())


def test_run_when_a_bug_stops_it_then_last_diagnostics_say_failed_with_the_error(tmp_path):
    def on_cycle(result) -> None:
        if result.index == 5:
            raise RuntimeError("boom\nsecond line")

    with pytest.raises(RuntimeError):
        run(RunOptions(state_dir=str(tmp_path), cycles=20), RunHooks(on_cycle=on_cycle, configure_kwargs={"env": {}}))

    service = _read_json(tmp_path / DIAGNOSTICS_FILE)["service"]
    assert (service["state"], service["failure"]) == (SERVICE_FAILED, "RuntimeError: boom")
    assert otel_diag.current() is None


# -- 6. temp files of an interrupted write are removed at the next start -----------------------------------
def test_start_when_a_write_was_killed_between_temp_file_and_rename_then_leftover_removed(tmp_path):
    # Arrange: a process SIGKILLed inside atomic_write_json, after its temp file, before its rename
    state = tmp_path / "state"
    state.mkdir()
    killed = subprocess.run([sys.executable, "-c", (
        "import os, signal, sys\n"
        "from execution import atomic\n"
        "os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
        "for name in sys.argv[1:]:\n"
        "    if os.fork() == 0:\n"
        "        atomic.atomic_write_json(name, {'partial': True})\n"
        "    os.wait()\n"), str(state / DIAGNOSTICS_FILE), str(state / POSITIONS_FILE)],
        cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=HANG_GUARD_SECONDS)
    assert killed.returncode == 0, killed.stderr
    leftovers = sorted(n for n in os.listdir(state) if n.startswith(".tmp-"))
    assert len(leftovers) == 2
    (state / ".tmp-notes.txt").write_text("not ours", encoding="utf-8")

    # Act
    proc = _executor(["--no-instrument", "--cycles", "3", "--state-dir", str(state)])

    # Assert
    assert proc.returncode == 0, proc.stderr
    assert sorted(n for n in os.listdir(state) if n.startswith(".tmp-")) == [".tmp-notes.txt"]
