"""Bad input, at the edge: one line on stderr, exit 2, the last run's journal untouched — everywhere.

Each case runs the real command line: ``python -m execution`` in a subprocess where the process
itself is what is tested (a recursion limit, a memory limit, a FIFO that never gets a writer, a
number Python will not convert), ``executor_live.main([...])`` in process otherwise. Every case
checks the same promise: exit code 2, nothing on stdout, exactly one short line on stderr that
names the flag, file, line or key and the bad value (cut when huge), no traceback, and — the
state dir holding a previous run's journal — not one byte or timestamp of it changed.

The accepted ranges are the ones the engine can compute with (``execution.config`` ``MAX_*``,
``execution.clock`` calendar, ``execution.market_data`` price and line limits); the tests at
the edges run one inside each bound to show the bound is not tighter than it says.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import typing
from datetime import datetime
from typing import Any, Dict, List, Optional, Tuple

import pytest

from execution import config as config_module
from execution.clock import LATEST_SECONDS, iso_z
from execution.config import MAX_BAR_SECONDS, MAX_CYCLES, MAX_SEED, AppConfig, config_from_dict
from execution.diagnostics_document import MAX_PUBLISH_INTERVAL_SECONDS
from execution.executor_live import main
from execution.journal import iso
from execution.market_data import CSV_COLUMNS, MAX_LINE_CHARS
from execution.state_v7 import load_runtime_diagnostics_state
from tests.fixtures.cli import HANG_GUARD_SECONDS, ROOT, cli_env, run_module, run_status

HEADER = ",".join(CSV_COLUMNS)
GOOD_ROW = "1767571200,BTCUSDT,100,101,99,100,1"
HUGE = "9" * 5000        # more digits than Python's int() accepts (4300), and longer than a CSV line may be
LONG = "9" * 4000        # fits in a CSV line; beyond float range
LONGEST_MESSAGE = 400    # one short line: a huge value is cut, never echoed whole
GIB = 1024 ** 3
MIB = 1024 ** 2

# The child runs the executor under an address-space limit and prints the executor's peak RSS (KiB).
_MEASURED = ("import resource, subprocess, sys\n"
             "limit = int(sys.argv[1])\n"
             "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
             "code = subprocess.run(sys.argv[2:]).returncode\n"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
             "sys.exit(code)\n")


# -- helpers ---------------------------------------------------------------------------------------
@pytest.fixture
def state(tmp_path):
    """A state dir holding the previous run's journal (and nothing else)."""
    folder = tmp_path / "state"
    folder.mkdir()
    (folder / "journal.jsonl").write_text('{"type": "order", "order_id": "previous-run"}\n', encoding="utf-8")
    return folder


def _snapshot(folder) -> Dict[str, Tuple[bytes, int, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino) for p in sorted(folder.iterdir())}


def _assert_one_line(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert out == ""
    assert "Traceback" not in err and "MemoryError" not in err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("error: ")
    assert len(err) < LONGEST_MESSAGE, err
    for fragment in fragments:
        assert fragment in err, err


def _bad_main(capsys, state, args: List[str], *fragments: str) -> str:
    """``main(args)`` in process: exit 2, one line naming ``fragments``, the state dir untouched."""
    before = _snapshot(state)
    code = main(["--no-instrument", "--state-dir", str(state), *args])
    out, err = capsys.readouterr()
    _assert_one_line(code, out, err, *fragments)
    assert _snapshot(state) == before
    return err


def _bad_cli(state, args: List[str], *fragments: str) -> str:
    """``python -m execution args`` in a subprocess: exit 2, one line, the state dir untouched."""
    before = _snapshot(state)
    proc = run_module("execution", "--no-instrument", "--state-dir", str(state), *args)
    _assert_one_line(proc.returncode, proc.stdout, proc.stderr, *fragments)
    assert _snapshot(state) == before
    return proc.stderr


def _measured_cli(state, args: List[str], limit_bytes: int) -> Tuple[subprocess.CompletedProcess, int]:
    """The executor under RLIMIT_AS ``limit_bytes``: the finished process and its peak RSS in bytes."""
    proc = subprocess.run([sys.executable, "-c", _MEASURED, str(limit_bytes), sys.executable, "-m", "execution",
                           "--no-instrument", "--state-dir", str(state), *args],
                          cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=HANG_GUARD_SECONDS)
    *out, peak_kib = proc.stdout.splitlines() or ["0"]
    return subprocess.CompletedProcess(proc.args, proc.returncode, "\n".join(out), proc.stderr), int(peak_kib) * 1024


def _csv(tmp_path, *rows: str) -> str:
    path = tmp_path / "bars.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return str(path)


def _config(tmp_path, data: Any = None, text: Optional[str] = None) -> str:
    path = tmp_path / "config.json"
    path.write_text(text if text is not None else json.dumps(data), encoding="utf-8")
    return str(path)


def _numeric_fields(cls: type = AppConfig, path: str = "") -> List[Tuple[str, type]]:
    """Every number in the config, as (key path, int or float), found from the dataclasses themselves."""
    found = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if typing.get_origin(tp) is typing.Union else tp
        key = f"{path}.{f.name}" if path else f.name
        if dataclasses.is_dataclass(tp):
            found += _numeric_fields(tp, key)
        elif tp in (int, float):
            found.append((key, tp))
    return found


def _nested(key_path: str, value: Any) -> Dict[str, Any]:
    *sections, name = key_path.split(".")
    data: Dict[str, Any] = {name: value}
    for section in reversed(sections):
        data = {section: data}
    return data


# -- 1. times off the calendar ------------------------------------------------------------------------
@pytest.mark.parametrize("ts", [
    "1e12", "-1e12", "-1", "1969-12-31T23:59:59Z",           # beyond year 33,000; before the epoch
    "0001-01-01T00:00:00Z", "0000-01-01T00:00:00Z", "-0001-01-01T00:00:00Z",  # year 1, year 0, a negative year
    "9999-12-31T23:59:00Z",                                  # on the calendar, but its bar would close in year 10000
    "nan", "inf", "-inf", "2026-13-45T99:99:99Z", "soon", LONG,
])
def test_data_when_time_off_the_calendar_then_exit_2_naming_line_and_value(tmp_path, state, capsys, ts):
    data = _csv(tmp_path, GOOD_ROW, f"{ts},BTCUSDT,100,101,99,100,1")

    err = _bad_main(capsys, state, ["--data", data], f"{data}:3: ts: expected ")

    assert repr(ts)[:30] in err


def test_data_when_last_bar_closes_on_the_calendars_last_second_then_runs_and_stamps_it(tmp_path, capsys):
    # Arrange: the latest accepted time, with the longest bar: the run's clock reaches 9999-12-31T23:59:59Z
    data = _csv(tmp_path, "9999-12-30T23:59:59Z,BTCUSDT,100,101,99,100,1")
    cfg = _config(tmp_path, {"market_data": {"bar_seconds": MAX_BAR_SECONDS}})

    # Act
    code = main(["--no-instrument", "--config", cfg, "--data", data, "--state-dir", str(tmp_path / "s")])

    # Assert
    assert code == 0, capsys.readouterr().err
    with open(tmp_path / "s" / "positions.json", encoding="utf-8") as fh:
        assert json.load(fh)["written_at"] == "9999-12-31T23:59:59.000000+00:00"


@pytest.mark.parametrize("start", [
    "9999-12-31T23:00:00Z", "9999-01-01T00:00:00Z",          # the first bars fit; the longest run would not
    "1969-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "0000-01-01T00:00:00Z", "-0001-01-01T00:00:00Z",
    "NaN", "inf", "2026-02-30T00:00:00Z", "yesterday", HUGE, 1e12, float("nan"),
])
def test_config_when_start_off_the_calendar_then_exit_2_naming_key_and_value(tmp_path, state, capsys, start):
    cfg = _config(tmp_path, {"market_data": {"start": start}})

    _bad_main(capsys, state, ["--config", cfg], f"{cfg}: market_data.start: expected ")


def test_config_when_start_is_the_latest_allowed_then_the_longest_run_still_ends_on_the_calendar(tmp_path, capsys):
    # Arrange: the latest start for day bars
    data = {"market_data": {"bar_seconds": MAX_BAR_SECONDS, "start": iso_z(LATEST_SECONDS - MAX_CYCLES * MAX_BAR_SECONDS)}}
    cfg = _config(tmp_path, data)

    # Act
    code = main(["--no-instrument", "--config", cfg, "--cycles", "3", "--state-dir", str(tmp_path / "s")])

    # Assert: it runs, and the longest run from there would still end on a stamp the journal can write
    assert code == 0, capsys.readouterr().err
    last_close = config_from_dict(data).market_data.start_epoch + MAX_CYCLES * MAX_BAR_SECONDS
    assert iso(last_close) == "9999-12-31T23:59:59.000000+00:00"


# -- 2. numbers beyond sane ranges ----------------------------------------------------------------------
def test_config_when_5000_digit_integer_then_exit_2_one_line(tmp_path, state):
    cfg = _config(tmp_path, text='{"router": {"twap_slices": %s}}' % HUGE)

    _bad_cli(state, ["--config", cfg], f"{cfg}: invalid JSON: a number of more than 4300 digits")


@pytest.mark.parametrize("key_path, fragment", [
    ("router.twap_slices", "expected at most 1000 slices, got 999999"),          # an integer key
    ("risk.cooldown_after_exit_seconds", "expected a finite number, got 999999"),  # a float key: beyond float range
])
def test_config_when_4000_digit_integer_then_exit_2_with_the_value_cut(tmp_path, state, capsys, key_path, fragment):
    *section, name = key_path.split(".")
    cfg = _config(tmp_path, text='{"%s": {"%s": %s}}' % (section[0], name, "9" * 4000))

    _bad_main(capsys, state, ["--config", cfg], f"{key_path}: {fragment}", "...")


@pytest.mark.parametrize("key_path, numeric_type", _numeric_fields())
def test_config_when_any_number_is_huge_then_exit_2_naming_its_key(tmp_path, state, capsys, key_path, numeric_type):
    # Arrange: 10^300 where the key takes an integer, 1e300 where it takes a float: both far beyond any range
    huge = 10 ** 300 if numeric_type is int else 1e300
    cfg = _config(tmp_path, _nested(key_path, huge))

    # Act / Assert
    _bad_main(capsys, state, ["--config", cfg], f"{cfg}: {key_path}: expected ")


@pytest.mark.parametrize("key_path, numeric_type", _numeric_fields())
def test_config_when_any_number_is_not_finite_then_exit_2_naming_its_key(tmp_path, state, capsys, key_path, numeric_type):
    cfg = _config(tmp_path, text=json.dumps(_nested(key_path, 0)).replace(": 0}", ": -Infinity}"))

    _bad_main(capsys, state, ["--config", cfg], f"{cfg}: {key_path}: expected ")


@pytest.mark.parametrize("data, fragment", [
    ({"market_data": {"bar_seconds": 1e12}}, "market_data.bar_seconds: expected at most 86400 seconds (a day), got 1000000000000"),
    ({"risk": {"max_concurrent_positions": True}}, "risk.max_concurrent_positions: expected an integer, got a boolean"),
    ({"risk": {"min_notional_usdt": False}}, "risk.min_notional_usdt: expected a number, got a boolean"),
    ({"strategy": {"allow_short": 1}}, "strategy.allow_short: expected true or false, got a number"),
    ({"diagnostics": {"enabled": 0}}, "diagnostics.enabled: expected true or false, got a number"),
    ({"strategy": {"stop_loss_pct": 1e-300}}, "strategy.stop_loss_pct: expected a fraction from 1e-06"),
])
def test_config_when_number_out_of_range_or_boolean_confused_then_exit_2(tmp_path, state, capsys, data, fragment):
    cfg = _config(tmp_path, data)

    _bad_main(capsys, state, ["--config", cfg], fragment)


@pytest.mark.parametrize("args, fragment", [
    (["--seed", HUGE], "--seed: invalid int value: '99999"),
    (["--cycles", HUGE], "--cycles: invalid int value: '99999"),
    (["--fault-at", HUGE], "--fault-at: invalid int value: '99999"),
    (["--bar-interval", HUGE], "--bar-interval: expected a finite number of seconds > 0 and <= 86400, got inf"),
    (["--scenario", HUGE], "--scenario: invalid choice: '99999"),
    ([HUGE], "unrecognized arguments: 99999"),
    (["--data", HUGE], "--data: expected a path shorter than 4096 bytes"),
    (["--config", HUGE], "--config: expected a path shorter than 4096 bytes"),
])
def test_flag_when_5000_digits_then_exit_2_with_the_value_cut(state, capsys, args, fragment):
    _bad_main(capsys, state, args, fragment)


def test_flag_when_5000_digit_seed_in_a_real_process_then_exit_2_one_line(state):
    _bad_cli(state, ["--seed", HUGE], "--seed: invalid int value: '99999", "...")


@pytest.mark.parametrize("args, fragment", [
    (["--seed", str(MAX_SEED + 1)], f"--seed: expected an integer >= 0 and <= {MAX_SEED} (64 bits), got {MAX_SEED + 1}"),
    (["--seed", str(2 ** 70)], f"--seed: expected an integer >= 0 and <= {MAX_SEED}"),
    (["--seed", "-1"], "--seed: expected an integer >= 0"),
    (["--cycles", str(MAX_CYCLES + 1)], f"--cycles: expected an integer >= 1 and <= {MAX_CYCLES}, got {MAX_CYCLES + 1}"),
    (["--cycles", str(10 ** 18)], f"--cycles: expected an integer >= 1 and <= {MAX_CYCLES}"),
    (["--fault-at", str(10 ** 18)], f"--fault-at: expected an integer >= 0 and <= {MAX_CYCLES}"),
    (["--cycles", "9" * 4000], "--cycles: expected an integer >= 1 and <= 1000000, got 9999"),
    (["--bar-interval", "1e12"], "--bar-interval: expected a finite number of seconds > 0 and <= 86400, got 1000000000000.0"),
    (["--bar-interval", "nan"], "--bar-interval: expected a finite number of seconds > 0"),
])
def test_flag_when_beyond_its_range_then_exit_2_naming_flag_bound_and_value(state, capsys, args, fragment):
    _bad_main(capsys, state, args, fragment)


def test_seed_when_the_largest_64_bit_value_then_diagnostics_json_reads_it_back_exactly(tmp_path):
    # Act: a real, instrumented run publishing diagnostics.json
    proc = run_module("execution", "--cycles", "2", "--seed", str(MAX_SEED), "--state-dir", str(tmp_path))

    # Assert: the run's own reader gets the same int back (it used to come back rounded through a float)
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "diagnostics.json", encoding="utf-8") as fh:
        written = json.load(fh)
    assert written["service"]["seed"] == MAX_SEED
    block = load_runtime_diagnostics_state(str(tmp_path), now=datetime.fromisoformat(written["written_at"]))
    assert block["problems"] == [] and block["service"]["seed"] == MAX_SEED


@pytest.mark.parametrize("row, fragment", [
    ("1767571260,BTCUSDT,1e308,1e308,1e308,1e308,1", "open: expected a finite positive number from 1e-12 to 1e+12, got '1e308'"),
    ("1767571260,BTCUSDT,100,1e13,99,100,1", "high: expected a finite positive number from 1e-12 to 1e+12, got '1e13'"),
    ("1767571260,BTCUSDT,100,101,5e-324,100,1", "low: expected a finite positive number from 1e-12 to 1e+12, got '5e-324'"),
    ("1767571260,BTCUSDT,100,101,99,inf,1", "close: expected a finite positive number"),
    ("1767571260,BTCUSDT,100,101,99,-inf,1", "close: expected a finite positive number"),
    ("1767571260,BTCUSDT,nan,101,99,100,1", "open: expected a finite positive number"),
    (f"1767571260,BTCUSDT,{LONG},101,99,100,1", "open: expected a finite positive number from 1e-12 to 1e+12, got '9999"),
    ("1767571260,BTCUSDT,100,101,99,100,1e19", "volume: expected a finite positive number up to 1e+18"),
    ("1767571260,BTCUSDT,100,101,99,100,nan", "volume: expected a finite positive number"),
    (f"1767571260,BTCUSDT,100,101,99,100,{LONG}", "volume: expected a finite positive number up to 1e+18"),
    (f"1767571260,BTCUSDT,{HUGE},101,99,100,1", f"line longer than {MAX_LINE_CHARS} characters"),
])
def test_data_when_price_or_volume_huge_or_not_finite_then_exit_2_naming_line_column_and_value(tmp_path, state, capsys,
                                                                                               row, fragment):
    data = _csv(tmp_path, GOOD_ROW, row)

    _bad_main(capsys, state, ["--data", data], f"{data}:3: {fragment}")


# -- 3. JSON nested 100,000 deep -------------------------------------------------------------------------
def test_config_when_json_nested_100000_deep_then_exit_2_one_line(tmp_path, state):
    cfg = _config(tmp_path, text='{"a": ' * 100_000 + "1" + "}" * 100_000)

    _bad_cli(state, ["--config", cfg], f"{cfg}: invalid JSON: nested too deeply")


def test_status_when_diagnostics_json_nested_100000_deep_then_exit_2_one_line(tmp_path):
    (tmp_path / "diagnostics.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")

    proc = run_status(tmp_path)

    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert proc.stderr.count("\n") == 1 and "corrupt" in proc.stderr, proc.stderr


# -- 4. endless lines, FIFOs, folders ----------------------------------------------------------------------
def test_data_when_dev_zero_under_a_1_gib_memory_limit_then_exit_2_one_line_in_bounded_memory(state):
    # Act: the real /dev/zero, the executor limited to 1 GiB of address space (it used to die of MemoryError)
    before = _snapshot(state)
    proc, peak = _measured_cli(state, ["--data", "/dev/zero"], limit_bytes=GIB)

    # Assert
    _assert_one_line(proc.returncode, proc.stdout, proc.stderr, "/dev/zero: cannot read (a character device, not a regular file)")
    assert peak < 64 * MIB, peak
    assert _snapshot(state) == before


def test_data_when_one_100_mib_line_without_newline_then_exit_2_at_the_line_cap_in_bounded_memory(tmp_path, state):
    # Arrange: a header, then one row of 100 MiB that never ends
    path = tmp_path / "endless.csv"
    with open(path, "wb") as fh:
        fh.write((HEADER + "\n1767571200,BTCUSDT,").encode())
        for _ in range(100):
            fh.write(b"9" * MIB)
    before = _snapshot(state)

    # Act
    proc, peak = _measured_cli(state, ["--data", str(path)], limit_bytes=GIB)

    # Assert: stopped at the cap, far below the line's size (it used to read it whole: 217 MiB)
    _assert_one_line(proc.returncode, proc.stdout, proc.stderr, f"{path}:2: line longer than {MAX_LINE_CHARS} characters")
    assert peak < 64 * MIB, peak
    assert _snapshot(state) == before


def test_data_when_a_fifo_with_no_writer_then_exit_2_without_blocking(tmp_path, state):
    fifo = tmp_path / "bars.csv"
    os.mkfifo(fifo)

    _bad_cli(state, ["--data", str(fifo)], f"{fifo}: cannot read (a FIFO, not a regular file)")


def test_data_when_a_folder_then_exit_2(tmp_path, state, capsys):
    _bad_main(capsys, state, ["--data", str(tmp_path)], f"{tmp_path}: cannot read (Is a directory)")


# -- 5. publish interval capped by the document model -------------------------------------------------------
def test_config_when_publish_interval_beyond_the_document_models_max_then_exit_2_naming_key_and_bound(tmp_path, state,
                                                                                                      capsys):
    cfg = _config(tmp_path, {"diagnostics": {"publish_interval_seconds": MAX_PUBLISH_INTERVAL_SECONDS + 1}})

    _bad_main(capsys, state, ["--config", cfg],
              f"diagnostics.publish_interval_seconds: expected at most {MAX_PUBLISH_INTERVAL_SECONDS:g} seconds")


# -- 6. a config file that is not a regular file, or too big --------------------------------------------------
def test_config_when_a_fifo_with_no_writer_then_exit_2_without_blocking(tmp_path, state):
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)

    _bad_cli(state, ["--config", str(fifo)], f"{fifo}: cannot read config (a FIFO, not a regular file)")


def test_config_when_dev_zero_then_exit_2_without_reading(state, capsys):
    _bad_main(capsys, state, ["--config", "/dev/zero"], "/dev/zero: cannot read config (a character device, not a regular file)")


def test_config_when_larger_than_the_cap_then_exit_2_after_a_bounded_read(tmp_path, state, capsys):
    cfg = _config(tmp_path, text="{" + " " * (config_module.MAX_CONFIG_BYTES + 1) + "}")

    _bad_main(capsys, state, ["--config", cfg], f"{cfg}: config larger than 1024 KiB")
