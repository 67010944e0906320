"""Readers never hang and never call a dead or frozen executor healthy.

Each test starts from the fault itself: a FIFO that no writer ever opens, a device (linked, or a
device node made with mknod) where ``diagnostics.json`` should be, a file at the loader's size cap
with every field far past the reader's caps, a writer whose clock runs ahead, a file that claims an
endless publish interval, numbers beyond float range, and a real executor that stopped. No test
bounds a duration or reads a clock: a reader that blocked (on a FIFO, say) would be ended by
pytest-timeout (pyproject.toml), the only guard against a hang, and ``fifo_at`` then releases it;
``otel-diag status`` runs through tests/fixtures/cli.py, whose timeout is a hang guard too.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from pathlib import Path
from typing import Any, Iterator, List

import pytest

from execution import diagnostics_document as dd
from execution.state_v7 import MAX_FILE_BYTES, list_executor_instances, load_runtime_diagnostics_state
from tests.fixtures import diagnostics_state as fx
from tests.fixtures.cli import ROOT, one_line, run_module, run_status
from tests.fixtures.diagnostics_state import LONG_AGO  # files read by a subprocess, whose clock is the wall clock

NOW = 1_767_600_000.0  # 2026-01-05T08:00:00Z: the loader's `now` in-process
BLOCK_BOUND_CHARS = 3 * 1024 * 1024  # what the reader's caps allow at most (2.5 M characters, see below)
MIB = 1024 * 1024


# -- helpers ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def fifo_at(path: Path) -> Iterator[Path]:
    """A FIFO at ``path`` that no writer opens. Afterwards a reader still blocked on it (the fault under test)
    is released: opening the write end and closing it gives that reader end-of-file."""
    os.mkfifo(path)
    try:
        yield path
    finally:
        for _ in range(100):
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no reader left
                    break
        os.unlink(path)


# -- 1. only regular files are read, and never blocking ----------------------------------------------
def test_load_when_diagnostics_json_is_a_fifo_no_writer_opens_then_unreadable_at_once(tmp_path):
    with fifo_at(tmp_path / dd.DIAGNOSTICS_FILE):
        block = load_runtime_diagnostics_state(tmp_path, now=NOW)

    assert block["status"] == dd.STATUS_UNREADABLE
    assert block["reason"] == f"{tmp_path / dd.DIAGNOSTICS_FILE}: a FIFO, not a regular file"


def test_load_when_diagnostics_json_links_to_a_fifo_then_unreadable_at_once(tmp_path):
    (tmp_path / "state").mkdir()
    with fifo_at(tmp_path / "pipe"):
        (tmp_path / "state" / dd.DIAGNOSTICS_FILE).symlink_to(tmp_path / "pipe")
        block = load_runtime_diagnostics_state(tmp_path / "state", now=NOW)

    assert block["status"] == dd.STATUS_UNREADABLE and block["reason"].endswith(": a FIFO, not a regular file")


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_load_when_diagnostics_json_links_to_a_device_then_unreadable_never_read(tmp_path, device):
    # /dev/zero used to be read to the 16 MiB cap ("larger than"), /dev/null read as an empty file
    (tmp_path / dd.DIAGNOSTICS_FILE).symlink_to(device)

    block = load_runtime_diagnostics_state(tmp_path, now=NOW)

    assert block["status"] == dd.STATUS_UNREADABLE
    assert block["reason"].endswith(": a character device, not a regular file")


def test_load_when_diagnostics_json_is_a_device_node_then_unreadable_never_read(tmp_path):
    path = tmp_path / dd.DIAGNOSTICS_FILE
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # the node /dev/zero is
    except PermissionError:
        pytest.fail("making a real device node needs CAP_MKNOD: run the reliability tests as root (make test in CI does)")

    block = load_runtime_diagnostics_state(tmp_path, now=NOW)

    assert block["status"] == dd.STATUS_UNREADABLE
    assert block["reason"].endswith(": a character device, not a regular file")


def test_list_instances_when_a_subfolder_holds_a_fifo_then_listed_and_its_reader_says_unreadable(tmp_path):
    fx.write_state(tmp_path / "executor-a", fx.ended(NOW, dd.SERVICE_STOPPED))
    (tmp_path / "executor-b").mkdir()
    with fifo_at(tmp_path / "executor-b" / dd.DIAGNOSTICS_FILE):
        instances = list_executor_instances(tmp_path)
        blocks = [load_runtime_diagnostics_state(i.state_dir, now=NOW) for i in instances]

    assert [i.name for i in instances] == ["executor-a", "executor-b"]
    assert [b["status"] for b in blocks] == [dd.STATUS_OK, dd.STATUS_UNREADABLE]


def test_status_when_diagnostics_json_is_a_fifo_then_exit_2_at_once_naming_it(tmp_path):
    with fifo_at(tmp_path / dd.DIAGNOSTICS_FILE):
        done = run_status(tmp_path)

    assert done.returncode == dd.EXIT_UNKNOWN
    assert one_line(done.stderr) == (f"otel-diag status: unreadable: {tmp_path / dd.DIAGNOSTICS_FILE}: "
                                     "a FIFO, not a regular file")
    assert "UNKNOWN (unreadable)" in done.stdout


def test_status_when_one_executor_folder_holds_a_fifo_then_every_executor_still_reported(tmp_path):
    fx.write_state(tmp_path / "executor-a", fx.ended(LONG_AGO, dd.SERVICE_STOPPED))
    (tmp_path / "executor-b").mkdir()
    with fifo_at(tmp_path / "executor-b" / dd.DIAGNOSTICS_FILE):
        done = run_status(tmp_path, "--json")

    assert done.returncode == dd.EXIT_UNKNOWN
    instances = json.loads(done.stdout)["instances"]
    assert {name: block["health"]["verdict"] for name, block in instances.items()} == {
        "executor-a": dd.VERDICT_STOPPED, "executor-b": dd.VERDICT_UNKNOWN}
    assert instances["executor-b"]["status"] == dd.STATUS_UNREADABLE
    assert done.stderr.splitlines()[1].startswith("otel-diag status: executor-b: unreadable: ")


def test_panel_when_diagnostics_json_is_a_fifo_then_page_renders_unusable_banner(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("OTEL_DIAG_STATE_DIR", os.fspath(tmp_path))
    monkeypatch.setenv("OTEL_DIAG_REFRESH_SECONDS", "30")
    with fifo_at(tmp_path / dd.DIAGNOSTICS_FILE):
        at = AppTest.from_file(os.path.join(ROOT, "dashboard", "app.py"), default_timeout=30).run()

    assert not at.exception, [e.value for e in at.exception]
    assert at.error[0].value.startswith("**Diagnostics unusable (unreadable)**")
    assert "a FIFO, not a regular file" in at.error[0].value.replace("\\", "")


# -- 2. fast and small on the largest file accepted ----------------------------------------------------
def _keys(tag: str, n: int) -> List[str]:
    """``n`` distinct 306-character keys: past MAX_TEXT_CHARS, and still distinct once cut."""
    return [f"{i:06d}{tag * 300}" for i in range(n)]


def _write_at_the_cap(folder: Path, doc: dict) -> Path:
    """``doc`` as diagnostics.json of exactly MAX_FILE_BYTES, its service name grown to fill what is left."""
    folder.mkdir(parents=True, exist_ok=True)
    doc["service"]["name"] = ""
    doc["service"]["name"] = "N" * (MAX_FILE_BYTES - len(json.dumps(doc, separators=(",", ":"))))
    text = json.dumps(doc, separators=(",", ":")).encode("ascii")
    assert len(text) == MAX_FILE_BYTES
    (folder / dd.DIAGNOSTICS_FILE).write_bytes(text)
    return folder


def every_cap_exceeded(folder: Path, at: float) -> Path:
    """A failed run's final file at the size cap: every text, key, list and map far past the reader's caps."""
    doc = fx.healthy(at)
    doc["service"].update(state=dd.SERVICE_FAILED, stopped_at=fx.iso(at), failure="disk full " + "F" * MIB)
    vc, ex, live = (doc["runtime_diagnostics"][k] for k in ("veto_counters", "exit_pipeline", "liveness"))
    n = 2 * dd.MAX_MAP_ENTRIES
    vc["by_reason"] = dict.fromkeys(_keys("r", n), 1)
    vc["by_symbol"] = dict.fromkeys(_keys("s", n), 1)
    vc["by_reason_symbol"] = {reason: dict.fromkeys(_keys("y", 2), 1) for reason in _keys("x", n)}
    vc["router_events"] = dict.fromkeys(_keys("e", n), 1)
    ex["missing_tp_sl_symbols"] = _keys("m", 4 * dd.MAX_LIST_ITEMS)
    ex["underwater_without_tp_sl_symbols"] = _keys("u", 4 * dd.MAX_LIST_ITEMS)
    for name in ("details", "thresholds"):
        live[name].update(dict.fromkeys(_keys("k", 4 * dd.MAX_LIVENESS_MAP_ENTRIES), 1.0))
    return _write_at_the_cap(folder, doc)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield key
            yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)


def test_load_when_file_at_the_size_cap_exceeds_every_cap_then_small_block_of_cut_values(tmp_path):
    folder = every_cap_exceeded(tmp_path / "state", NOW)

    block = load_runtime_diagnostics_state(folder, now=NOW)

    size = len(json.dumps(block, allow_nan=False))
    print(f"\n{MAX_FILE_BYTES / MIB:.0f} MiB file, every cap exceeded -> block of {size / 1024:.0f} KiB")
    assert block["status"] == dd.STATUS_OK and block["problems"] == []
    assert size <= BLOCK_BOUND_CHARS
    vc, ex, live = (block["runtime_diagnostics"][k] for k in ("veto_counters", "exit_pipeline", "liveness"))
    assert len(vc["by_reason"]) == len(vc["by_symbol"]) == len(vc["router_events"]) == dd.MAX_MAP_ENTRIES
    assert sum(1 + len(inner) for inner in vc["by_reason_symbol"].values()) <= dd.MAX_MAP_ENTRIES
    assert len(ex["missing_tp_sl_symbols"]) == len(ex["underwater_without_tp_sl_symbols"]) == dd.MAX_LIST_ITEMS
    assert len(live["details"]) == len(live["thresholds"]) == dd.MAX_LIVENESS_MAP_ENTRIES
    texts = [s for section in ("service", "runtime_diagnostics") for s in _strings(block[section])]
    assert max(map(len, texts)) == dd.MAX_TEXT_CHARS
    assert block["service"]["name"] == "N" * (dd.MAX_TEXT_CHARS - 1) + "…"
    assert block["service"]["failure"].startswith("disk full FFF") and block["service"]["failure"].endswith("…")


def test_load_when_file_at_the_size_cap_holds_thousands_of_wrong_values_then_problems_capped(tmp_path):
    doc = fx.healthy(NOW)
    wrong = 4 * dd.MAX_MAP_ENTRIES
    doc["runtime_diagnostics"]["veto_counters"]["by_reason"].update(
        {f"r{i:07d}": "x" * ((MAX_FILE_BYTES - MIB) // wrong) for i in range(wrong)})
    folder = _write_at_the_cap(tmp_path / "state", doc)

    block = load_runtime_diagnostics_state(folder, now=NOW)

    assert block["status"] == dd.STATUS_INVALID and len(block["problems"]) == dd.MAX_PROBLEMS
    assert block["reason"].endswith(f"by_reason.r0000000: expected an integer >= 0, got '{'x' * 36}... (and 49 more)")
    assert len(json.dumps(block, allow_nan=False)) < 64 * 1024


def test_status_when_file_at_the_size_cap_exceeds_every_cap_then_returns_one_short_line_and_small_output(tmp_path):
    # A 16 MiB service name took `otel-diag status` 5 min 22 s to print before the caps (rich wrapped it).
    folder = every_cap_exceeded(tmp_path / "state", LONG_AGO)

    table = run_status(folder)
    as_json = run_status(folder, "--json")

    assert table.returncode == as_json.returncode == dd.EXIT_UNKNOWN
    line = one_line(table.stderr)
    assert line.startswith(f"otel-diag status: failed at {fx.iso(LONG_AGO)} (disk full FFF")
    assert line.endswith("…) — last verdict healthy") and len(line) < 2 * dd.MAX_TEXT_CHARS
    assert "FAILED" in table.stdout and len(table.stdout) < 16 * 1024
    assert len(as_json.stdout) <= BLOCK_BOUND_CHARS + 256 * 1024  # the block, indented
    assert json.loads(as_json.stdout)["health"]["verdict"] == dd.VERDICT_FAILED


# -- 3. a written_at in the future is not fresh -------------------------------------------------------
def test_status_when_writer_clock_is_centuries_ahead_then_exit_2_saying_written_at_is_in_the_future(tmp_path):
    doc = fx.healthy(NOW)
    doc["written_at"] = "2999-01-01T00:00:00+00:00"
    folder = Path(fx.write_state(tmp_path / "state", doc))

    done = run_status(folder)

    assert done.returncode == dd.EXIT_UNKNOWN
    line = one_line(done.stderr)
    assert line.startswith(f"otel-diag status: stale: {folder / dd.DIAGNOSTICS_FILE}: written_at is ")
    assert line.endswith(" in the future (more than 30s ahead of this clock), so its age is unknown")
    assert "UNKNOWN (stale)" in done.stdout and " OK " not in done.stdout


@pytest.mark.parametrize("ahead, status_", [(dd.FUTURE_SKEW_SECONDS, dd.STATUS_OK),
                                             (dd.FUTURE_SKEW_SECONDS + 1, dd.STATUS_STALE)])
def test_load_when_written_at_is_ahead_then_fresh_only_within_the_skew(tmp_path, ahead, status_):
    fx.write_state(tmp_path, fx.healthy(NOW + ahead))
    assert load_runtime_diagnostics_state(tmp_path, now=NOW)["status"] == status_


# -- 4. a max age is never infinite ----------------------------------------------------------------------
@pytest.mark.parametrize("interval, expected", [(1e300, "a number > 0 and at most 3600, got 1e+300"),
                                                (dd.MAX_PUBLISH_INTERVAL_SECONDS + 1, "a number > 0 and at most 3600, got 3601.0"),
                                                (10 ** 400, "a finite number, got 1000000000000000000")])
def test_load_when_file_claims_an_endless_publish_interval_then_invalid_not_fresh_for_ever(tmp_path, interval,
                                                                                           expected):
    doc = fx.healthy(NOW - 10 * 365 * 86_400)  # ten years old: "fresh" under 3 × 1e300 s
    doc["service"]["publish_interval_seconds"] = interval
    fx.write_state(tmp_path, doc)

    block = load_runtime_diagnostics_state(tmp_path, now=NOW)

    assert block["status"] == dd.STATUS_INVALID and dd.health(block).code == dd.EXIT_UNKNOWN
    assert f"service.publish_interval_seconds: expected {expected}" in block["reason"]
    assert block["max_age_seconds"] <= dd.STALE_AFTER_INTERVALS * dd.MAX_PUBLISH_INTERVAL_SECONDS


@pytest.mark.parametrize("asked", [1e308, 1e12])
def test_load_when_caller_asks_an_enormous_max_age_then_capped_at_a_day(tmp_path, asked):
    fx.write_state(tmp_path, fx.healthy(NOW - 2 * 86_400))

    block = load_runtime_diagnostics_state(tmp_path, now=NOW, max_age_seconds=asked)

    assert block["status"] == dd.STATUS_STALE and block["max_age_seconds"] == dd.MAX_AGE_LIMIT_SECONDS


def test_status_when_max_age_beyond_a_day_then_exit_2_one_line(tmp_path):
    done = run_status(tmp_path, "--max-age", "1e300")
    assert done.returncode == 2 and "--max-age: expected a number of seconds > 0 and at most 86400" in done.stderr


# -- 5. a stopped or failed executor is not healthy --------------------------------------------------------
def test_status_when_a_real_executor_run_ended_then_exit_2_stopped_with_its_last_verdict(tmp_path):
    state = tmp_path / "state"
    run = run_module("execution", "--cycles", "30", "--state-dir", state)
    assert run.returncode == 0, run.stderr
    final = json.loads((state / dd.DIAGNOSTICS_FILE).read_text(encoding="utf-8"))["service"]

    done = run_status(state)

    assert done.returncode == dd.EXIT_UNKNOWN
    assert one_line(done.stderr) == f"otel-diag status: stopped at {final['stopped_at']} — last verdict healthy"
    assert "STOPPED" in done.stdout and "HEALTHY" not in done.stdout and " OK " not in done.stdout


def test_status_when_run_failed_long_ago_then_failed_wins_over_stale_with_the_failure(tmp_path):
    doc = fx.mismatch(LONG_AGO)
    failure = "OSError: [Errno 28] No space left on device\x1b[2J"
    doc["service"].update(state=dd.SERVICE_FAILED, stopped_at=fx.iso(LONG_AGO), failure=failure)
    folder = fx.write_state(tmp_path / "state", doc)
    summary = (f"failed at {fx.iso(LONG_AGO)} ({failure}) "
               "— last verdict alerting: ledger/registry mismatch (1 open without TP/SL)")

    done = run_status(folder)
    as_json = json.loads(run_status(folder, "--json").stdout)

    assert done.returncode == dd.EXIT_UNKNOWN
    assert one_line(done.stderr) == "otel-diag status: " + summary.replace("\x1b", "?")  # no escape reaches a terminal
    assert "FAILED" in done.stdout and "\x1b" not in done.stdout
    assert as_json["status"] == dd.STATUS_STALE
    assert as_json["health"] == {"code": 2, "verdict": "failed", "summary": summary,
                                 "alerts": ["ledger/registry mismatch (1 open without TP/SL)"]}


# -- 6. the loader's output is always strict JSON ----------------------------------------------------------
HUGE = 10 ** 400


@pytest.mark.parametrize("path, value", [
    (("service", "publish_interval_seconds"), 1e308),
    (("service", "publish_interval_seconds"), HUGE),
    (("service", "seed"), HUGE),
    (("service", "pid"), 1e308),
    (("runtime_diagnostics", "veto_counters", "total_signals"), HUGE),
    (("runtime_diagnostics", "veto_counters", "by_reason", "min_notional"), HUGE),
    (("runtime_diagnostics", "veto_counters", "by_reason", "min_notional"), 1e308),
    (("runtime_diagnostics", "exit_pipeline", "open_positions_count"), HUGE),
    (("runtime_diagnostics", "liveness", "details", "router"), 1e308),
    (("runtime_diagnostics", "liveness", "details", "router"), HUGE),
    (("runtime_diagnostics", "liveness", "thresholds", "router"), 1e308),
    (("runtime_diagnostics", "liveness", "thresholds", "router"), HUGE),
])
@pytest.mark.parametrize("now, max_age", [(NOW, None), (NOW, 1e308), (NOW, HUGE), (1e308, None), (-1e308, 1e-300)])
def test_load_when_numbers_are_beyond_range_then_block_is_strict_json(tmp_path, path, value, now, max_age):
    doc = fx.healthy(NOW)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    (tmp_path / dd.DIAGNOSTICS_FILE).write_text(json.dumps(doc), encoding="utf-8")  # 1e308 and 10**400 as written

    block = load_runtime_diagnostics_state(tmp_path, now=now, max_age_seconds=max_age)

    json.dumps(block, allow_nan=False)  # a publish interval of 1e308 made max_age_seconds inf
    assert 0 < block["max_age_seconds"] <= dd.MAX_AGE_LIMIT_SECONDS
    assert block["status"] in dd.STATUSES and isinstance(dd.health(block).code, int)
