"""dashboard.risk_panel (pure view models) and dashboard/app.py (AppTest against fixture state folders)."""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard import risk_panel as rp
from execution import diagnostics_document as dd
from execution.diagnostics_document import MAX_STALE_SYMBOLS_SHOWN
from execution.state_v7 import parse_runtime_diagnostics
from tests.fixtures import diagnostics_state as fx
from tests.fixtures.diagnostics_state import ALL_SYMBOL_LIMITS, FROZEN_LIMIT, NO_BARS_LIMIT

NOW = 1_767_600_000.0
APP = os.path.join(os.path.dirname(__file__), "..", "..", "..", "dashboard", "app.py")
JAEGER = "http://127.0.0.1:16686"


def block_of(doc, now=NOW, **kw):
    return parse_runtime_diagnostics(doc, now=now, **kw)


def rows_by_key(block, jaeger=None):
    return {r.key: r for r in rp.liveness_rows(block, jaeger)}


def health_by_label(block):
    return {r.label: r for r in rp.exit_health_rows(block)}


# -- liveness rows ----------------------------------------------------------------------------------
def test_liveness_rows_when_healthy_then_green_with_idle_durations_and_limits():
    rows = rows_by_key(block_of(fx.healthy(NOW)))
    assert list(rows) == ["signals", "orders", "exits", "exit_scans", "router"]
    assert {r.icon for r in rows.values()} == {"✅"}
    assert rows["orders"].text == "idle for 3m" and rows["orders"].threshold == "20m"
    assert rows["exit_scans"].threshold == "2m"


def test_liveness_rows_when_router_stalled_and_exits_never_seen_then_red_with_reason():
    rows = rows_by_key(block_of(fx.idle_with_missing(NOW)))
    assert (rows["router"].icon, rows["router"].text) == ("🔴", "idle for 45m")
    assert (rows["exits"].icon, rows["exits"].state, rows["exits"].text) == ("🔴", "missing", "never seen (missing)")
    assert rows["signals"].icon == "✅"


@pytest.mark.parametrize("doc", [fx.stale(NOW), {"schema_version": 1}, None])
def test_liveness_rows_when_state_untrusted_then_unknown_never_green(doc):
    rows = rp.liveness_rows(block_of(doc))
    assert {r.icon for r in rows} == {"⚪"} and {r.state for r in rows} == {"unknown"}


def test_liveness_rows_when_stale_then_last_known_figures_kept():
    rows = rows_by_key(block_of(fx.stale(NOW)))
    assert rows["orders"].text == "unknown (last known: idle for 3m)"


def test_liveness_rows_when_liveness_disabled_then_neutral_not_green():
    doc = fx.healthy(NOW)
    doc["runtime_diagnostics"]["liveness"].update(enabled=False, details={}, missing={}, thresholds={})
    rows = rp.liveness_rows(block_of(doc))
    assert {r.state for r in rows} == {"disabled"} and "✅" not in {r.icon for r in rows}


def test_liveness_rows_when_threshold_absent_then_not_checked():
    doc = fx.healthy(NOW)
    live = doc["runtime_diagnostics"]["liveness"]
    for part in ("details", "missing", "thresholds"):
        live[part].pop("exits")
    assert rows_by_key(block_of(doc))["exits"].state == "not_checked"


def test_liveness_rows_when_jaeger_configured_then_trace_links():
    rows = rows_by_key(block_of(fx.healthy(NOW)), JAEGER)
    assert rows["signals"].trace_url == f"{JAEGER}/trace/{fx.TRACE_IDS['signals']}"
    assert rows_by_key(block_of(fx.healthy(NOW)))["signals"].trace_url is None


@pytest.mark.parametrize("base, trace_id", [
    ("javascript:alert(1)", fx.TRACE_IDS["signals"]),
    ("http://j", "javascript:alert(1)"),
    ("http://j", "0" * 32),
    ("ftp://j", fx.TRACE_IDS["signals"]),
    (None, fx.TRACE_IDS["signals"]),
    ("http://", fx.TRACE_IDS["signals"]),
])
def test_jaeger_trace_url_when_unsafe_then_no_link(base, trace_id):
    assert rp.jaeger_trace_url(base, trace_id) is None


def test_jaeger_trace_url_when_base_has_markdown_breakers_then_percent_encoded():
    url = rp.jaeger_trace_url("http://j/a b)(x", fx.TRACE_IDS["orders"])
    assert url == f"http://j/a%20b%29%28x/trace/{fx.TRACE_IDS['orders']}"


def test_resolve_jaeger_when_env_and_file_set_then_operator_wins_and_bad_file_ignored():
    doc = fx.healthy(NOW, jaeger_ui_url="http://from-file:16686")
    assert rp.resolve_jaeger_ui_url(block_of(doc), JAEGER) == JAEGER
    assert rp.resolve_jaeger_ui_url(block_of(doc)) == "http://from-file:16686"
    assert rp.resolve_jaeger_ui_url(block_of(fx.hostile(NOW))) is None


# -- market data: the verdict's stale symbols in the liveness card --------------------------------------------
def test_market_data_rows_when_every_symbol_fresh_then_one_green_row_counting_them():
    rows = rp.market_data_rows(block_of(fx.with_market_data(fx.healthy(NOW))))
    assert [(r.icon, r.state, r.text, r.threshold, r.symbol) for r in rows] == [
        ("✅", "ok", f"all {len(fx.MARKET_SYMBOLS)} symbols fresh", ALL_SYMBOL_LIMITS, None)]


def test_market_data_rows_when_symbols_stale_then_one_red_row_each_with_check_age_and_limit():
    doc = fx.with_market_data(fx.healthy(NOW), stale={"SOLUSDT": ("price_frozen", 720.0), "ETHUSDT": ("no_bars", 240.0)},
                              missing=["XRPUSDT"])
    rows = rp.market_data_rows(block_of(doc))
    assert [(r.symbol, r.check, r.age, r.threshold, r.icon, r.state) for r in rows] == [
        ("ETHUSDT", "no_bars", 240.0, NO_BARS_LIMIT, "🔴", "stale"),
        ("SOLUSDT", "price_frozen", 720.0, FROZEN_LIMIT, "🔴", "stale"),
        ("XRPUSDT", "no_bars", None, NO_BARS_LIMIT, "🔴", "stale")]
    assert [_plain(r.text) for r in rows] == ["ETHUSDT (no bars for 4m)", "SOLUSDT (price frozen for 12m)",
                                              "XRPUSDT (no bars ever)"]


@pytest.mark.parametrize("lists, stale", [
    ({"stale_symbols": [], "symbol_checks": {}}, ["ETHUSDT"]),           # the ages say stale: stale
    ({"stale_symbols": ["BTCUSDT", "ETHUSDT"]}, ["BTCUSDT", "ETHUSDT"]),  # listed stale: stale, whatever the ages
])
def test_market_data_rows_when_fields_disagree_then_the_verdicts_symbols(lists, stale):
    doc = fx.with_market_data(fx.healthy(NOW), stale={"ETHUSDT": ("no_bars", 2400.0)})
    doc["runtime_diagnostics"]["liveness"].update(lists)
    block = block_of(doc)
    assert [r.symbol for r in rp.market_data_rows(block)] == stale
    assert rp.status_badge(block) == "🔴 alerting"


def test_market_data_rows_when_hundreds_stale_with_markup_names_then_capped_and_escaped():
    names = ["**b** [x](javascript:y)", fx.HOSTILE, *(f"S{i:03d}" for i in range(298))]
    doc = fx.with_market_data(fx.healthy(NOW), stale={n: ("no_bars", 600.0) for n in names})
    rows = rp.market_data_rows(block_of(doc))
    assert len(rows) == MAX_STALE_SYMBOLS_SHOWN + 1
    assert (rows[-1].state, rows[-1].text) == ("more", dd.more_stale_text(300 - MAX_STALE_SYMBOLS_SHOWN))
    assert rows[0].text == "\\*\\*b\\*\\* \\[x\\]\\(javascript\\:y\\) \\(no bars for 10m\\)"
    assert _plain(rows[1].text) == f"{fx.HOSTILE} (no bars for 10m)"
    assert not any(re.search(r"(?<!\\)[<>\[\]()*]", r.text) for r in rows)


@pytest.mark.parametrize("change, state, text", [
    ("no thresholds", "not_checked", dd.NOT_CHECKED),
    ("liveness disabled", "disabled", "liveness checks disabled"),
])
def test_market_data_rows_when_not_checked_then_neutral_never_green(change, state, text):
    doc = fx.healthy(NOW) if change == "no thresholds" else fx.with_market_data(fx.healthy(NOW))
    doc["runtime_diagnostics"]["liveness"]["enabled"] = change != "liveness disabled"
    assert [(r.icon, r.state, r.text) for r in rp.market_data_rows(block_of(doc))] == [("➖", state, text)]


@pytest.mark.parametrize("doc, text", [
    (fx.with_market_data(fx.stale(NOW), stale={"ETHUSDT": ("no_bars", 240.0)}),
     "unknown (last known: ETHUSDT \\(no bars for 4m\\))"),
    (fx.ended(NOW, "stopped", lambda at: fx.with_market_data(fx.healthy(at), stale={"ETHUSDT": ("no_bars", 240.0)})),
     "unknown (last known: ETHUSDT \\(no bars for 4m\\))"),
    (fx.ended(NOW, "failed", lambda at: fx.with_market_data(fx.healthy(at))),
     f"unknown (last known: all {len(fx.MARKET_SYMBOLS)} symbols fresh)"),
    (None, "unknown"),
])
def test_market_data_rows_when_state_untrusted_or_run_ended_then_last_known_never_green_or_red(doc, text):
    rows = rp.market_data_rows(block_of(doc))
    assert [(r.icon, r.state, r.text) for r in rows] == [("⚪", "unknown", text)]


# -- exit health ------------------------------------------------------------------------------------
def test_exit_health_when_all_protected_then_full_coverage_and_agreement():
    rows = health_by_label(block_of(fx.healthy(NOW)))
    assert rows["TP/SL coverage"].value == "100% (3 of 3 protected)" and rows["TP/SL coverage"].icon == "✅"
    assert rows["Ledger vs TP/SL registry"].value == "in agreement"


def test_exit_health_when_nothing_open_then_dash_never_zero_percent():
    rows = health_by_label(block_of(fx.no_positions(NOW)))
    assert rows["TP/SL coverage"].value == "—, no open positions"
    assert "0%" not in " ".join(r.value for r in rows.values())


def test_exit_health_when_mismatch_then_flag_symbols_and_orphans():
    rows = health_by_label(block_of(fx.mismatch(NOW)))
    assert rows["TP/SL coverage"].value == "67% (2 of 3 protected)" and rows["TP/SL coverage"].icon == "🔴"
    assert rows["Ledger vs TP/SL registry"].value == "mismatch: 1 open without TP/SL: ETHUSDT"
    assert (rows["Underwater without TP/SL"].icon, rows["Underwater without TP/SL"].value) == ("🔴", "1: ETHUSDT")
    assert rows["Orphaned TP/SL entries"].icon == "🟠"


def test_exit_health_when_state_missing_then_unknown():
    rows = rp.exit_health_rows(block_of(None))
    assert {r.icon for r in rows} == {"⚪"} and {r.value for r in rows} == {"unknown"}


# -- vetoes, banner, escaping -------------------------------------------------------------------------
def test_veto_cells_when_reason_symbol_known_then_one_cell_per_pair():
    cells = rp.veto_cells(block_of(fx.healthy(NOW)))
    assert {"reason": "already_in_position", "symbol": "BTCUSDT", "vetoes": 5} in cells
    assert sum(c["vetoes"] for c in cells) == 29


def test_veto_cells_when_only_by_reason_then_all_symbols_column():
    doc = fx.healthy(NOW)
    doc["runtime_diagnostics"]["veto_counters"].pop("by_reason_symbol")
    cells = rp.veto_cells(block_of(doc))
    assert {c["symbol"] for c in cells} == {"(all symbols)"} and len(cells) == 5


def test_veto_totals_when_healthy_then_counts_and_last_veto_relative_to_snapshot():
    totals = rp.veto_totals(block_of(fx.healthy(NOW)))
    assert (totals["signals"], totals["orders"], totals["vetoes"]) == (47, 18, 29)
    assert totals["last_veto"] == "2026-01-05 07:57:30 UTC (2m 30s before the snapshot)"


def test_veto_heatmap_when_cells_then_altair_rect_chart():
    spec = rp.veto_heatmap(rp.veto_cells(block_of(fx.healthy(NOW)))).to_dict()
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["rect", "text"]


@pytest.mark.parametrize("doc, expected", [
    (fx.stale(NOW), "**Stale diagnostics**: diagnostics\\.json\\: stale, written 1h ago, limit 3m"),
    (None, "**Diagnostics unusable (invalid)**"),
])
def test_banner_when_untrusted_then_error_saying_why(doc, expected):
    note = rp.banner(block_of(doc))
    assert note.level == "error" and note.text.startswith(expected) and "unknown" in note.text


def test_banner_when_fresh_then_none_and_when_stopped_then_info():
    assert rp.banner(block_of(fx.healthy(NOW))) is None
    doc = fx.healthy(NOW)
    doc["service"]["state"] = "stopped"
    assert rp.banner(block_of(doc)).level == "info"


@pytest.mark.parametrize("text", [fx.HOSTILE, "**b** [x](javascript:y) `c` $x$ :red[y] | a | <img src=x>"])
def test_md_escape_when_markup_then_every_special_character_escaped(text):
    escaped = rp.md_escape(text)
    for ch in "<>*[]()`$|":
        assert all(escaped[i - 1] == "\\" for i, c in enumerate(escaped) if c == ch), ch


def test_md_escape_when_url_or_email_then_autolink_broken():
    escaped = rp.md_escape("see http://evil.example www.evil.example a@b.example")
    assert "://" not in escaped and "www." not in escaped.replace("\\", "") and "a@" not in escaped


def test_status_badge_when_cases_then_verdict():
    assert rp.status_badge(block_of(fx.healthy(NOW))) == "✅ healthy"
    assert rp.status_badge(block_of(fx.mismatch(NOW))) == "🔴 alerting"
    assert rp.status_badge(block_of(fx.stale(NOW))) == "⚪ unknown"


def test_risk_panel_imports_no_opentelemetry():
    code = ("import sys, dashboard.risk_panel; "
            "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'otel_diag'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- property: the pure helpers never raise on anything the loader lets through ------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=10**308, max_value=10**320) | st.floats()
    | st.text(max_size=20),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=3), max_leaves=15)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=json_values, raw_block=json_values, jaeger=st.none() | st.text(max_size=20) | st.just(JAEGER))
def test_view_models_when_random_input_then_never_raise(doc, raw_block, jaeger):
    for block in (block_of(doc), raw_block if isinstance(raw_block, dict) else {"status": raw_block}):
        for row in rp.liveness_rows(block, jaeger):
            assert not re.search(r"-\d", row.text + row.threshold), row  # no negative duration
            assert "nan" not in (row.text + row.threshold).lower() and "inf" not in row.text.lower()
        for row in rp.market_data_rows(block):
            assert "nan" not in (row.text + row.threshold).lower() and not re.search(r"-\d", row.text + row.threshold)
        rp.exit_health_rows(block), rp.veto_cells(block), rp.veto_totals(block)
        rp.banner(block), rp.header_caption(block), rp.status_badge(block)


@settings(max_examples=100, deadline=None)
@given(mutation=st.sampled_from(["details", "thresholds"]),
       value=st.floats() | st.integers() | st.integers(min_value=10**308, max_value=10**320) | st.text(max_size=5))
def test_view_models_when_durations_are_garbage_then_no_negative_or_nan_text(mutation, value):
    block = block_of(fx.healthy(NOW))
    block["runtime_diagnostics"]["liveness"][mutation]["router"] = value  # even past the loader
    row = rows_by_key(block)["router"]
    assert "nan" not in (row.text + row.threshold).lower() and not re.search(r"-\d", row.text + row.threshold)


# -- the page (streamlit.testing.v1.AppTest against fixture state folders) ---------------------------------
@pytest.fixture
def page(monkeypatch, tmp_path):
    """Run dashboard/app.py against a state folder; returns the AppTest after one full run."""
    from streamlit.testing.v1 import AppTest

    def run(state_dir, jaeger=None):
        monkeypatch.setenv("OTEL_DIAG_STATE_DIR", os.fspath(state_dir))
        monkeypatch.setenv("OTEL_DIAG_REFRESH_SECONDS", "30")
        if jaeger:
            monkeypatch.setenv("JAEGER_UI_URL", jaeger)
        else:
            monkeypatch.delenv("JAEGER_UI_URL", raising=False)
        at = AppTest.from_file(APP, default_timeout=30).run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return run


def _plain(markdown: str) -> str:
    """What Markdown with backslash escapes shows as text."""
    return re.sub(r"\\(.)", r"\1", markdown)


def _tables(at):
    return [t.value for t in at.table]


def _texts(at):
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [e.value for e in at.error]
    parts += [s.value for s in at.subheader] + [i.value for i in at.info]
    for frame in _tables(at):
        parts += [" | ".join(str(v) for v in row) for row in frame.itertuples(index=False)]
    return "\n".join(parts)


def test_page_when_healthy_then_green_liveness_and_heatmap(page, tmp_path):
    at = page(fx.write_state(tmp_path / "state", fx.with_market_data(fx.healthy(time.time()))), jaeger=JAEGER)
    liveness, health = _tables(at)
    assert list(liveness["Check"]) == ["Signals", "Orders", "Exits (TP/SL triggers)", "Exit scans", "Router",
                                       "Market data"]
    assert set(liveness[""]) == {"✅"} and liveness["Status"][1] == "idle for 3m"
    assert liveness["Status"][5] == f"all {len(fx.MARKET_SYMBOLS)} symbols fresh" and liveness["Last event"][5] == "—"
    assert liveness["Last event"][0] == f"[trace ↗]({JAEGER}/trace/{fx.TRACE_IDS['signals']})"
    assert "100% (3 of 3 protected)" in list(health["Value"])
    assert not at.error and _plain(at.subheader[0].value) == "state · ✅ healthy"
    assert len(at.get("vega_lite_chart")) == 1
    assert [m.value for m in at.metric] == ["47", "18", "29"]


def test_page_when_idle_with_missing_keys_then_red_rows_and_never_seen(page, tmp_path):
    at = page(fx.write_state(tmp_path / "state", fx.idle_with_missing(time.time())))
    liveness = _tables(at)[0].set_index("Check")
    assert liveness.loc["Router", ""] == "🔴" and liveness.loc["Router", "Status"] == "idle for 45m"
    assert liveness.loc["Exits (TP/SL triggers)", "Status"] == "never seen (missing)"
    assert "Last event" not in liveness.columns  # no Jaeger configured: no trace column
    assert "🔴 alerting" in at.subheader[0].value


def test_page_when_a_symbol_is_stale_then_red_market_data_row_in_liveness_card(page, tmp_path):
    doc = fx.with_market_data(fx.healthy(time.time()), stale={"ETHUSDT": ("no_bars", 240.0)})
    at = page(fx.write_state(tmp_path / "state", doc))
    liveness = _tables(at)[0]
    market = liveness[liveness["Check"] == "Market data"]
    assert [tuple(r) for r in market.itertuples(index=False)] == [("🔴", "Market data", "ETHUSDT \\(no bars for 4m\\)",
                                                                   NO_BARS_LIMIT)]
    assert set(liveness[liveness["Check"] != "Market data"][""]) == {"✅"}
    assert "🔴 alerting" in at.subheader[0].value


def test_page_when_mismatch_then_flag_and_underwater_symbols(page, tmp_path):
    at = page(fx.write_state(tmp_path / "state", fx.mismatch(time.time())))
    health = _tables(at)[1].set_index("Check")
    assert health.loc["Ledger vs TP/SL registry", "Value"] == "mismatch: 1 open without TP/SL: ETHUSDT"
    assert health.loc["Underwater without TP/SL", "Value"] == "1: ETHUSDT"
    assert health.loc["TP/SL coverage", "Value"] == "67% (2 of 3 protected)"


def test_page_when_no_open_positions_then_coverage_dash(page, tmp_path):
    at = page(fx.write_state(tmp_path / "state", fx.no_positions(time.time())))
    assert _tables(at)[1].set_index("Check").loc["TP/SL coverage", "Value"] == "—, no open positions"


@pytest.mark.parametrize("content, words", [
    ('{"schema_version": 1, "written_at": "2026-', "Diagnostics unusable (corrupt)"),
    ("", "Diagnostics unusable (empty)"),
    (None, "No diagnostics"),
])
def test_page_when_state_corrupt_or_missing_then_banner_and_unknown(page, tmp_path, content, words):
    folder = tmp_path / "state"
    folder.mkdir()
    if content is not None:
        fx.write_raw(folder, content)
    at = page(folder)
    assert words in at.error[0].value
    liveness, health = _tables(at)
    assert set(liveness[""]) == {"⚪"} and set(health[""]) == {"⚪"}
    assert "✅" not in _texts(at)


def test_page_when_stale_then_banner_and_unknown_never_green(page, tmp_path):
    at = page(fx.write_state(tmp_path / "state", fx.stale(time.time(), age=1200)))
    assert at.error[0].value.startswith("**Stale diagnostics**: ")
    assert "diagnostics.json: stale, written 20m ago, limit 3m" in _plain(at.error[0].value)
    liveness = _tables(at)[0]
    assert set(liveness[""]) == {"⚪"} and liveness["Status"][0].startswith("unknown (last known: idle for")
    assert "✅" not in _texts(at)


def test_page_when_hostile_strings_then_escaped_text_never_html(page, tmp_path):
    at = page(fx.write_state(tmp_path / "state", fx.hostile(time.time())))
    health = _tables(at)[1].set_index("Check")
    assert health.loc["Underwater without TP/SL", "Value"] == "1: \\<script\\>alert\\(1\\)\\</script\\>"
    caption = next(c.value for c in at.caption if "realtime" in c.value)
    assert "\\*\\*bold\\*\\* \\[x\\]\\(javascript\\:alert\\(1\\)\\)" in caption
    assert not re.search(r"(?<!\\)[<>]", _texts(at)), "an unescaped angle bracket reached Markdown"
    assert _plain(caption).startswith(f"{fx.HOSTILE} · **bold** [x](javascript:alert(1))")
    assert all(not m.proto.allow_html for m in list(at.markdown) + list(at.caption) + list(at.error))
    assert len(at.get("html")) == 0
    assert "Last event" not in _tables(at)[0].columns  # javascript: Jaeger URL from the file: no links


def test_page_when_folder_holds_executors_then_side_by_side(page, tmp_path):
    now = time.time()
    fx.write_state(tmp_path / "executor-a", fx.healthy(now))
    fx.write_state(tmp_path / "executor-b", fx.idle_with_missing(now))
    at = page(tmp_path)
    assert [_plain(s.value) for s in at.subheader] == ["executor-a · ✅ healthy", "executor-b · 🔴 alerting"]
    assert len(at.columns) >= 2 and len(_tables(at)) == 4
    assert "2 executors" in _texts(at)


def test_parse_options_when_args_env_and_defaults_then_args_win():
    from dashboard.app import parse_options

    env = {"OTEL_DIAG_STATE_DIR": "/env", "OTEL_DIAG_REFRESH_SECONDS": "7", "JAEGER_UI_URL": JAEGER}
    cli = parse_options(["--state-dir", "/cli", "--refresh-seconds", "2"], env)
    assert (cli.state_dir, cli.refresh_seconds, cli.jaeger_ui_url) == ("/cli", 2.0, JAEGER)
    from_env = parse_options(["-q", "tests/x.py"], env)
    assert (from_env.state_dir, from_env.refresh_seconds) == ("/env", 7.0)
    options = parse_options(["--refresh-seconds", "nan"], {})
    assert (options.state_dir, options.refresh_seconds, options.jaeger_ui_url) == ("state", 5.0, None)
    assert options.warnings and math.isfinite(options.refresh_seconds)


# -- a run that ended: its own badge and banner, never green -------------------------------------------------
@pytest.mark.parametrize("doc, badge", [
    (fx.ended(NOW, "stopped"), "⏹️ stopped"),
    (fx.ended(fx.LONG_AGO, "stopped"), "⏹️ stopped"),  # stale, and stopped: stopped is the more useful truth
    (fx.ended(NOW, "failed", builder=fx.mismatch), "💥 failed"),
    (fx.ended(fx.LONG_AGO, "running"), "⚪ unknown"),
])
def test_status_badge_when_run_ended_then_stopped_or_failed_never_green(doc, badge):
    assert rp.status_badge(block_of(doc)) == badge


def test_banner_when_failed_then_error_with_the_failure_escaped():
    note = rp.banner(block_of(fx.ended(NOW, "failed", failure=fx.HOSTILE)))
    assert note.level == "error"
    assert _plain(note.text) == (f"**The executor failed at {fx.iso(NOW)} ({fx.HOSTILE}) — last verdict healthy**. "
                                 "Checks show its final snapshot.")
    assert not re.search(r"(?<!\\)[<>()]", note.text)  # every bracket from the file escaped


def test_rows_when_stopped_then_last_known_figures_never_green():
    block = block_of(fx.ended(NOW, "stopped"))
    assert {r.icon for r in rp.liveness_rows(block)} == {"⚪"} and {r.icon for r in rp.exit_health_rows(block)} == {"⚪"}
    assert rows_by_key(block)["orders"].text == "unknown (last known: idle for 3m)"


def test_page_when_executor_stopped_long_ago_then_stopped_badge_and_info_banner_no_green(page, tmp_path):
    at = page(fx.write_state(tmp_path / "state", fx.ended(fx.LONG_AGO, "stopped")))
    assert _plain(at.subheader[0].value) == "state · ⏹️ stopped"
    assert not at.error and _plain(at.info[0].value).startswith(f"**The executor stopped at {fx.iso(fx.LONG_AGO)} — "
                                                                "last verdict healthy**")
    assert "✅" not in _texts(at)


def test_page_when_executor_failed_with_markup_in_the_failure_then_failed_badge_and_text_escaped(page, tmp_path):
    at = page(fx.write_state(tmp_path / "state", fx.ended(fx.LONG_AGO, "failed", failure=f"{fx.HOSTILE} **disk**")))
    assert _plain(at.subheader[0].value) == "state · 💥 failed"
    assert "\\(\\<script\\>alert\\(1\\)\\</script\\> \\*\\*disk\\*\\*\\)" in at.error[0].value
    assert not re.search(r"(?<!\\)[<>]", _texts(at)) and "✅" not in _texts(at)
    assert all(not m.proto.allow_html for m in list(at.markdown) + list(at.caption)) and len(at.get("html")) == 0


def test_page_when_written_at_is_in_the_future_then_stale_banner_saying_so(page, tmp_path):
    doc = fx.healthy(NOW)
    doc["written_at"] = "2999-01-01T00:00:00+00:00"
    at = page(fx.write_state(tmp_path / "state", doc))
    assert "written_at is " in _plain(at.error[0].value) and " in the future " in _plain(at.error[0].value)
    assert _plain(at.subheader[0].value) == "state · ⚪ unknown" and "✅" not in _texts(at)
