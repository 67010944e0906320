"""``python -m execution`` as a user runs it: a real subprocess, exit codes, stdout and stderr.

Every run here passes ``--no-instrument``; the telemetry path has its own tests.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from typing import List, Optional

import pytest

from execution.market_data import CSV_COLUMNS
from tests.fixtures.bars import write_synthetic_csv
from tests.fixtures.cli import HANG_GUARD_SECONDS, ROOT, cli_env, run_module


def _executor(args: List[str]) -> subprocess.CompletedProcess:
    return run_module("execution", *args)


def _assert_one_line_error(proc: subprocess.CompletedProcess, fragment: Optional[str] = None) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.endswith("\n") and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: ")
    if fragment is not None:
        assert fragment in proc.stderr, proc.stderr


def _config(tmp_path, text: str) -> str:
    path = tmp_path / "config.json"
    path.write_text(text, encoding="utf-8")
    return str(path)


# -- help and a good run ------------------------------------------------------------------------
def test_help_when_asked_then_exit_0_listing_the_options():
    proc = _executor(["--help"])

    assert proc.returncode == 0 and proc.stderr == ""
    for flag in ("--config", "--state-dir", "--cycles", "--seed", "--scenario", "--fault-at", "--pace",
                 "--data", "--no-instrument"):
        assert flag in proc.stdout


def test_run_when_healthy_replay_then_exit_0_summary_and_state_files(tmp_path):
    # Act
    proc = _executor(["--no-instrument", "--cycles", "200", "--state-dir", str(tmp_path)])

    # Assert
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("bars: 200   signals: ") and "vetoes: " in lines[0]
    assert any(line.startswith("orders routed: ") and "fills: " in line for line in lines)
    assert any(line.startswith("PnL realized: ") for line in lines)
    assert lines[-1] == f"state: {tmp_path}/journal.jsonl, {tmp_path}/positions.json"
    with open(tmp_path / "positions.json", encoding="utf-8") as fh:
        assert set(json.load(fh)) == {"written_at", "positions", "tp_sl", "realized_pnl"}
    assert (tmp_path / "journal.jsonl").stat().st_size > 0


def test_run_when_not_a_tty_then_output_is_plain_text(tmp_path):
    proc = _executor(["--no-instrument", "--cycles", "50", "--state-dir", str(tmp_path)])

    assert proc.returncode == 0
    assert "\x1b" not in proc.stdout and "\r" not in proc.stdout
    assert proc.stderr == ""


def test_run_when_scenario_and_fault_at_given_then_exit_0_with_stuck_orders(tmp_path):
    proc = _executor(["--no-instrument", "--cycles", "200", "--scenario", "router_stall", "--fault-at", "20",
                      "--state-dir", str(tmp_path)])

    assert proc.returncode == 0, proc.stderr
    stuck = re.search(r"not routed: (\d+)", proc.stdout)
    assert stuck and int(stuck.group(1)) > 0


def test_run_when_good_csv_then_exit_0_and_every_row_processed(tmp_path):
    # Arrange
    data = tmp_path / "bars.csv"
    write_synthetic_csv(data, seed=3, cycles=90)

    # Act
    proc = _executor(["--no-instrument", "--data", str(data), "--state-dir", str(tmp_path / "s")])

    # Assert
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("bars: 90   signals: ")
    fills = [json.loads(line) for line in open(tmp_path / "s" / "journal.jsonl", encoding="utf-8")]
    assert any(r["type"] == "fill" for r in fills)


# -- bad input: one line, exit 2 ----------------------------------------------------------------
@pytest.mark.parametrize("text, fragment", [
    ('{"risk": {"max_positions": 3}}', "risk.max_positions: unknown key"),
    ('{"risk": {"max_concurrent_positions": "five"}}', "risk.max_concurrent_positions: expected an integer, got a string"),
    ('{"diagnostics": {"liveness": {"max_idle_orders_seconds": -1}}}', "diagnostics.liveness.max_idle_orders_seconds: expected"),
    ('{"router": {"twap_slices": 0}}', "router.twap_slices: expected an integer >= 1, got 0"),
    ('{"exchange": {"fee_rate": 1.5}}', "exchange.fee_rate: expected a number between 0 and 1, got 1.5"),
    ('{"risk": {"min_notional_usdt": 5,}}', "invalid JSON at line 1"),
    ("[1, 2]", "expected a JSON object at the top level"),
])
def test_config_when_bad_then_exit_2_with_one_line(tmp_path, text, fragment):
    proc = _executor(["--no-instrument", "--config", _config(tmp_path, text), "--state-dir", str(tmp_path / "s")])

    _assert_one_line_error(proc, fragment)
    assert not (tmp_path / "s").exists()


def test_config_when_file_missing_then_exit_2_naming_it(tmp_path):
    missing = str(tmp_path / "nope.json")

    proc = _executor(["--no-instrument", "--config", missing])

    _assert_one_line_error(proc, f"{missing}: config file not found")


@pytest.mark.parametrize("args, fragment", [
    (["--cycles", "many"], "--cycles: invalid int value"),
    (["--cycles", "0"], "--cycles: expected an integer >= 1"),
    (["--fault-at", "-1"], "--fault-at: expected an integer >= 0"),
    (["--scenario", "meltdown"], "--scenario: invalid choice"),
    (["--pace", "warp"], "--pace: invalid choice"),
    (["--bar-interval", "-2"], "--bar-interval: expected a finite number of seconds > 0"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["--seed"], "--seed: expected one argument"),
])
def test_flags_when_bad_then_exit_2_with_one_line(args, fragment):
    _assert_one_line_error(_executor(["--no-instrument", *args]), fragment)


def test_data_when_row_malformed_then_exit_2_naming_the_line(tmp_path):
    # Arrange: the bad row is line 4
    data = tmp_path / "bars.csv"
    data.write_text(",".join(CSV_COLUMNS) + "\n"
                    "1767571200,BTCUSDT,100,101,99,100,1\n"
                    "1767571260,BTCUSDT,100,101,99,100,1\n"
                    "1767571320,BTCUSDT,100,101,99,oops,1\n", encoding="utf-8")

    # Act
    proc = _executor(["--no-instrument", "--data", str(data), "--state-dir", str(tmp_path / "s")])

    # Assert
    _assert_one_line_error(proc, f"{data}:4: close: expected a number, got 'oops'")


def test_data_when_file_missing_then_exit_2(tmp_path):
    _assert_one_line_error(_executor(["--no-instrument", "--data", str(tmp_path / "none.csv")]), "cannot read")


def test_state_dir_when_a_file_then_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")

    _assert_one_line_error(_executor(["--no-instrument", "--cycles", "5", "--state-dir", str(blocker)]),
                           "--state-dir")


# -- SIGTERM / SIGINT -----------------------------------------------------------------------------
def _wait_until_running(proc: subprocess.Popen, path) -> None:
    """Wait (bounded) until the executor has opened its journal: its signal handlers are in place by then."""
    for _ in range(HANG_GUARD_SECONDS * 20):
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            if path.exists() and path.stat().st_size > 0:
                return
        else:
            pytest.fail(f"executor exited early: {proc.returncode} {proc.stderr.read()}")
    pytest.fail("executor did not start")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_when_realtime_run_then_cycle_finished_state_written_exit_0(tmp_path, signum):
    # Arrange: a run far longer than the test, paced at 20 bars a second
    journal = tmp_path / "journal.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "execution", "--no-instrument", "--pace", "realtime",
                             "--bar-interval", "0.05", "--cycles", "100000", "--state-dir", str(tmp_path)],
                            cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_running(proc, journal)

        # Act
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=HANG_GUARD_SECONDS)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # Assert: a clean exit, a summary, complete state files
    assert proc.returncode == 0, err
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == "interrupted: finished the current cycle and wrote state"
    bars = int(lines[1].split()[1])
    assert 0 < bars < 100000
    records = [json.loads(line) for line in journal.read_text(encoding="utf-8").splitlines()]
    assert records and all("type" in r for r in records)
    with open(tmp_path / "positions.json", encoding="utf-8") as fh:
        state = json.load(fh)
    assert {(p["symbol"], p["side"]) for p in state["positions"]} >= {(e["symbol"], e["side"]) for e in state["tp_sl"]}
