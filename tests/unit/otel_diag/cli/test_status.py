"""`otel-diag status`: exit codes 0 healthy / 1 alerting / 2 unknown, the table, and --json."""
from __future__ import annotations

import json
import os
import re
import time

import pytest

from execution import diagnostics_document as dd
from execution.diagnostics_document import MAX_STALE_SYMBOLS_SHOWN
from otel_diag.cli import main
from tests.fixtures import diagnostics_state as fx
from tests.fixtures.cli import one_line, run_status
from tests.fixtures.diagnostics_state import ALL_SYMBOL_LIMITS, FROZEN_LIMIT, LONG_AGO, NO_BARS_LIMIT


def status(capsys, *args):
    code = main(["status", *map(os.fspath, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_status_when_healthy_then_exit_0_and_table(capsys, tmp_path):
    code, out, err = status(capsys, "--state-dir", fx.write_state(tmp_path / "state", fx.healthy(time.time())))
    assert code == 0 and err == ""
    assert "HEALTHY" in out
    for line in ("signals", "orders", "exits", "exit_scans", "router"):
        assert any(row.split()[:2] == [line, "OK"] for row in out.splitlines()), line
    assert "100% (3 of 3)" in out


@pytest.mark.parametrize("builder, alert", [
    (fx.idle_with_missing, "orders idle, exits idle (never seen), router idle"),
    (fx.mismatch, "ledger/registry mismatch (1 open without TP/SL)"),
])
def test_status_when_idle_or_mismatch_then_exit_1_naming_it(capsys, tmp_path, builder, alert):
    code, out, err = status(capsys, "--state-dir", fx.write_state(tmp_path / "state", builder(time.time())))
    assert code == 1 and "ALERTING" in out
    assert err.strip() == f"otel-diag status: alerting: {alert}"


def test_status_when_idle_then_table_shows_idle_and_never_seen(capsys, tmp_path):
    _, out, _ = status(capsys, "--state-dir", fx.write_state(tmp_path / "s", fx.idle_with_missing(time.time())))
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "IDLE" in rows["router"] and "idle for 45m" in rows["router"]
    assert "never seen (missing)" in rows["exits"]


@pytest.mark.parametrize("content, word", [
    (None, "missing"),
    ("", "empty"),
    ('{"schema_version": 1, "written_at": "2026-01', "corrupt"),
    ('{"schema_version": 9}', "unsupported_schema"),
])
def test_status_when_state_missing_or_unreadable_then_exit_2_one_line(capsys, tmp_path, content, word):
    folder = tmp_path / "state"
    folder.mkdir()
    if content is not None:
        fx.write_raw(folder, content)
    code, out, err = status(capsys, "--state-dir", folder)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"otel-diag status: {word}: ")
    assert f"UNKNOWN ({word})" in out


def test_status_when_stale_then_exit_2_even_if_figures_were_healthy(capsys, tmp_path):
    code, out, err = status(capsys, "--state-dir", fx.write_state(tmp_path / "s", fx.stale(time.time(), age=600)))
    assert code == 2 and "stale, written 10m ago, limit 3m" in err
    assert " OK " not in out and "last known: idle for" in out


def test_status_when_max_age_given_then_it_decides_staleness(capsys, tmp_path):
    folder = fx.write_state(tmp_path / "s", fx.stale(time.time(), age=100))
    assert status(capsys, "--state-dir", folder)[0] == 0
    assert status(capsys, "--state-dir", folder, "--max-age", "30")[0] == 2


@pytest.mark.parametrize("bad", ["0", "-5", "soon", "nan"])
def test_status_when_max_age_is_not_positive_seconds_then_exit_2(capsys, tmp_path, bad):
    code, _, err = status(capsys, "--state-dir", tmp_path, "--max-age", bad)
    assert code == 2 and "--max-age" in err


def test_status_json_when_healthy_then_the_loaded_block(capsys, tmp_path):
    code, out, _ = status(capsys, "--state-dir", fx.write_state(tmp_path / "s", fx.healthy(time.time())), "--json")
    block = json.loads(out)
    assert code == 0 and block["status"] == "ok"
    assert block["runtime_diagnostics"]["exit_pipeline"]["tp_sl_coverage_pct"] == 1.0


def test_status_json_when_missing_then_defaults_and_exit_2(capsys, tmp_path):
    code, out, _ = status(capsys, "--state-dir", tmp_path / "none", "--json")
    block = json.loads(out)
    assert code == 2 and block["status"] == "missing"
    assert block["runtime_diagnostics"]["liveness"]["missing"] == {}


def test_status_when_folder_holds_executors_then_worst_decides_and_each_named(capsys, tmp_path):
    now = time.time()
    fx.write_state(tmp_path / "executor-a", fx.healthy(now))
    fx.write_state(tmp_path / "executor-b", fx.mismatch(now))
    code, out, err = status(capsys, "--state-dir", tmp_path)
    assert code == 1 and "executor-a" in out and "executor-b" in out
    assert err.strip() == "otel-diag status: executor-b: alerting: ledger/registry mismatch (1 open without TP/SL)"
    code, out, _ = status(capsys, "--state-dir", tmp_path, "--json")
    assert set(json.loads(out)["instances"]) == {"executor-a", "executor-b"}


def test_status_when_hostile_strings_then_printed_as_text(capsys, tmp_path):
    doc = fx.hostile(time.time())
    doc["runtime_diagnostics"]["exit_pipeline"]["missing_tp_sl_symbols"] = ["[bold]X[/bold]\x1b[2J"]
    code, out, err = status(capsys, "--state-dir", fx.write_state(tmp_path / "s", doc))
    assert code == 1
    assert fx.HOSTILE in out and "[bold]X[/bold]" in out and "\x1b" not in out + err


def test_status_via_python_m_when_healthy_and_when_missing_then_exit_codes(tmp_path):
    folder = fx.write_state(tmp_path / "state", fx.healthy(time.time()))
    ok = run_status(folder)
    assert ok.returncode == 0, ok.stderr
    assert "HEALTHY" in ok.stdout
    gone = run_status(tmp_path / "no")
    assert gone.returncode == 2
    assert gone.stderr.strip().startswith("otel-diag status: missing: ") and "Traceback" not in gone.stderr


# -- a run that ended: its own verdict, whatever the file's age ---------------------------------------------
def test_status_when_executor_stopped_then_exit_2_one_line_and_stopped_table_never_ok(capsys, tmp_path):
    code, out, err = status(capsys, "--state-dir", fx.write_state(tmp_path / "s", fx.ended(LONG_AGO, "stopped")))
    assert code == 2
    assert err.strip() == f"otel-diag status: stopped at {fx.iso(LONG_AGO)} — last verdict healthy"
    assert "STOPPED" in out and "HEALTHY" not in out and " OK " not in out
    assert f"stopped at {fx.iso(LONG_AGO)} — last verdict healthy" in out and "last known: idle for" in out


def test_status_when_executor_failed_then_exit_2_naming_the_failure_and_last_alerts(capsys, tmp_path):
    doc = fx.ended(LONG_AGO, "failed", fx.mismatch, failure="[bold]disk full[/bold]")
    code, out, err = status(capsys, "--state-dir", fx.write_state(tmp_path / "s", doc))
    assert code == 2 and "FAILED" in out and "[bold]disk full[/bold]" in out  # file text printed as text
    assert err.strip() == (f"otel-diag status: failed at {fx.iso(LONG_AGO)} ([bold]disk full[/bold]) — "
                           "last verdict alerting: ledger/registry mismatch (1 open without TP/SL)")


def test_status_json_when_stopped_then_block_carries_the_verdict(capsys, tmp_path):
    folder = fx.write_state(tmp_path / "s", fx.ended(LONG_AGO, "stopped"))
    code, out, _ = status(capsys, "--state-dir", folder, "--json")
    block = json.loads(out)
    assert code == 2 and block["status"] == "stale" and block["service"]["state"] == "stopped"
    assert block["health"] == {"code": 2, "verdict": "stopped", "alerts": [],
                               "summary": f"stopped at {fx.iso(LONG_AGO)} — last verdict healthy"}


def test_status_json_when_stale_and_running_then_verdict_unknown(capsys, tmp_path):
    code, out, _ = status(capsys, "--state-dir", fx.write_state(tmp_path / "s", fx.healthy(LONG_AGO)), "--json")
    assert code == 2 and json.loads(out)["health"] == {"code": 2, "verdict": "unknown", "alerts": [], "summary": ""}


# -- per-symbol market data: the verdict's stale symbols, in the liveness section ----------------------------
def market_rows(out):
    """The table's market-data rows as their (state, value, limit) cells."""
    return [re.split(r"\s{2,}", line.strip())[1:] for line in out.splitlines() if line.startswith("market data ")]


@pytest.mark.parametrize("stale, missing, text, limit", [
    ({"ETHUSDT": ("no_bars", 240.0)}, (), "ETHUSDT (no bars for 4m)", NO_BARS_LIMIT),
    ({"SOLUSDT": ("price_frozen", 720.0)}, (), "SOLUSDT (price frozen for 12m)", FROZEN_LIMIT),
    ({}, ("XRPUSDT",), "XRPUSDT (no bars ever)", NO_BARS_LIMIT),
])
def test_status_when_a_symbol_is_stale_then_exit_1_one_line_and_row_naming_symbol_and_check(
        capsys, tmp_path, stale, missing, text, limit):
    doc = fx.with_market_data(fx.healthy(time.time()), stale=stale, missing=missing)
    code, out, err = status(capsys, "--state-dir", fx.write_state(tmp_path / "s", doc))
    assert code == 1 and "ALERTING" in out
    assert one_line(err) == f"otel-diag status: alerting: {dd.MARKET_DATA_STALE}: {text}"
    assert market_rows(out) == [["STALE", text, limit]]
    assert "BTCUSDT" not in out  # a fresh symbol is never listed


def test_status_when_every_symbol_fresh_then_exit_0_and_row_says_how_many(capsys, tmp_path):
    doc = fx.with_market_data(fx.healthy(time.time()))
    code, out, err = status(capsys, "--state-dir", fx.write_state(tmp_path / "s", doc))
    assert code == 0 and err == ""
    assert market_rows(out) == [["OK", f"all {len(fx.MARKET_SYMBOLS)} symbols fresh", ALL_SYMBOL_LIMITS]]
    rows = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert rows.index("market") == rows.index("router") + 1  # in the liveness section, before the exit rows


@pytest.mark.parametrize("change", ["no thresholds", "liveness disabled"])
def test_status_when_symbols_not_checked_then_row_says_not_checked_never_ok(capsys, tmp_path, change):
    doc = fx.healthy(time.time()) if change == "no thresholds" else fx.with_market_data(fx.healthy(time.time()))
    doc["runtime_diagnostics"]["liveness"]["enabled"] = change != "liveness disabled"
    code, out, _ = status(capsys, "--state-dir", fx.write_state(tmp_path / "s", doc))
    assert code == 0 and market_rows(out) == [["-", "not checked", "-"]]


def test_status_when_run_stopped_with_a_stale_symbol_then_last_known_never_ok(capsys, tmp_path):
    doc = fx.ended(LONG_AGO, "stopped", lambda at: fx.with_market_data(fx.healthy(at),
                                                                           stale={"ETHUSDT": ("no_bars", 2400.0)}))
    code, out, err = status(capsys, "--state-dir", fx.write_state(tmp_path / "s", doc))
    assert code == 2 and one_line(err).endswith(f"last verdict alerting: {dd.MARKET_DATA_STALE}: ETHUSDT (no bars for 40m)")
    assert market_rows(out) == [["?", "last known: ETHUSDT (no bars for 40m)", NO_BARS_LIMIT]]


@pytest.mark.parametrize("lists, says", [
    ({"stale_symbols": [], "symbol_checks": {}}, "ETHUSDT (no bars for 40m)"),  # the ages say stale: stale
    ({"stale_symbols": ["BTCUSDT", "ETHUSDT"]}, "BTCUSDT (no bars for 30s), ETHUSDT (no bars for 40m)"),
])
def test_status_when_symbol_fields_disagree_then_read_the_unhealthy_way(capsys, tmp_path, lists, says):
    doc = fx.with_market_data(fx.healthy(time.time()), stale={"ETHUSDT": ("no_bars", 2400.0)})
    doc["runtime_diagnostics"]["liveness"].update(lists)
    code, out, err = status(capsys, "--state-dir", fx.write_state(tmp_path / "s", doc))
    assert code == 1 and one_line(err) == f"otel-diag status: alerting: {dd.MARKET_DATA_STALE}: {says}"
    assert len(market_rows(out)) == says.count("(")


def test_status_when_hostile_symbols_by_the_hundred_then_text_bounded_and_one_line(capsys, tmp_path):
    hostile = ["\x1b[2Jclear", "EVIL\nLINE", "[red]X[/red]"]
    many = {s: ("no_bars", 4000.0) for s in [*hostile, *(f"sym{i:03d}" for i in range(297))]}
    doc = fx.with_market_data(fx.healthy(time.time()), stale=many)
    code, out, err = status(capsys, "--state-dir", fx.write_state(tmp_path / "s", doc))
    line = one_line(err)  # the newline in a name is not a second line
    assert code == 1 and line.endswith(dd.more_stale_text(300 - MAX_STALE_SYMBOLS_SHOWN))
    assert "\x1b" not in out + err and "?[2Jclear (no bars for 1h 06m)" in line
    rows = market_rows(out)
    assert len(rows) == MAX_STALE_SYMBOLS_SHOWN + 1
    assert rows[-1] == ["STALE", dd.more_stale_text(300 - MAX_STALE_SYMBOLS_SHOWN)]
    assert "[red]X[/red] (no bars for 1h 06m)" in out and "EVIL?LINE (no bars for 1h 06m)" in out  # as text
    assert len(out.splitlines()) < 40
