"""Bad input, property-based: nothing escapes, no negative or NaN duration, the block stays strict JSON.

Hypothesis throws at the liveness evaluation, the state-file loader and the risk panel's pure
render helpers what clocks, config files and disks produce on a bad day: any string, numbers
(NaN, infinities, huge integers), naive and aware datetimes at the ends of the calendar,
thresholds of every type and sign, and random JSON structures — alone or spliced into a valid
``diagnostics.json`` at a random place.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import otel_diag
from dashboard import risk_panel
from execution.diagnostics_document import LIVENESS_CHECKS, LIVENESS_KEYS, STATUSES
from execution.diagnostics_metrics import compute_liveness_alerts, parse_timestamp
from execution.state_publish import write_runtime_diagnostics_state
from execution.state_v7 import load_runtime_diagnostics_state, parse_runtime_diagnostics
from otel_diag import semconv as sc
from tests.fixtures import diagnostics_state as fx

EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = 1_767_600_000.0

# -- strategies ----------------------------------------------------------------------------------
OFFSETS = st.sampled_from([timezone.utc, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12)),
                           timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(seconds=-1))])
NAIVE = st.datetimes(min_value=datetime.min, max_value=datetime.max)
AWARE = st.datetimes(min_value=datetime.min, max_value=datetime.max, timezones=OFFSETS)
EXTREME = st.sampled_from([datetime.min, datetime.max, datetime.min.replace(tzinfo=timezone(timedelta(hours=14))),
                           datetime.max.replace(tzinfo=timezone(timedelta(hours=-12))),
                           datetime(1970, 1, 1), datetime(2038, 1, 19, 3, 14, 8, tzinfo=timezone.utc)])
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10 ** 30), 10 ** 30),
                    st.sampled_from([0, -0.0, 1e-300, 1e308, -1e308, 10 ** 400, -(10 ** 400), 253402300800,
                                     -62135596801, 1_767_600_000, float("nan"), float("inf"), float("-inf")]))


def _iso_variants(dt: datetime) -> st.SearchStrategy:
    text = dt.isoformat()
    return st.sampled_from([text, text + "Z", text + "z", text.replace("T", " "), text[:10], text + "+25:00",
                            text[:-3], " " + text + " ", text.replace("-", "/")])


TIMESTAMP_STRINGS = st.one_of(st.text(max_size=40), st.from_regex(r"\A[0-9+\-.eE:TZ ]{0,30}\Z"),
                              st.one_of(NAIVE, AWARE).flatmap(_iso_variants),
                              st.sampled_from(["nan", "inf", "-inf", "1e999", "NaN", "Infinity", "0", "-1",
                                               "1767600000", "+1767600000.5", ".5", "2026-13-45T99:99:99Z", ""]))
TIMESTAMPS = st.one_of(st.none(), st.booleans(), TIMESTAMP_STRINGS, NUMBERS, NAIVE, AWARE, EXTREME,
                       st.binary(max_size=10), st.lists(st.integers(), max_size=2), st.builds(object))
THRESHOLDS = st.one_of(st.none(), st.just(0), st.just(0.0), NUMBERS, st.booleans(), st.text(max_size=12),
                       st.sampled_from(["600", "-5", "nan", "inf", "1e999", "0x10"]),
                       st.lists(st.integers(), max_size=2))
NOW_VALUES = st.one_of(st.none(), NAIVE, AWARE, EXTREME)

# Numbers a JSON parser can hand back: floats, and integers of any size (json reads 1e400-digit ints).
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10 ** 20), 10 ** 20),
              st.floats(allow_nan=True, allow_infinity=True),
              st.sampled_from([10 ** 400, -(10 ** 400), 2 ** 63, -(2 ** 63) - 1]),
              st.text(max_size=20), TIMESTAMP_STRINGS),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)


@st.composite
def liveness_configs(draw) -> SimpleNamespace:
    enabled = draw(st.one_of(st.booleans(), st.none(), st.integers(-1, 1), st.text(max_size=3)))
    return SimpleNamespace(enabled=enabled, **{c.threshold_field: draw(THRESHOLDS) for c in LIVENESS_CHECKS})


def _paths(doc: Any, prefix=()) -> List[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def spliced_documents(draw, float_range: bool = False) -> Any:
    """A valid diagnostics.json with one random place replaced by random JSON (or deleted)."""
    doc = fx.healthy(NOW, jaeger_ui_url=draw(st.sampled_from([None, "http://127.0.0.1:16686"])))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        path = draw(st.sampled_from(paths))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        if isinstance(parent, dict) and draw(st.booleans()) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(FLOAT_RANGE_JSON if float_range else JSON)
    return doc


DOCUMENTS = st.one_of(JSON, spliced_documents())


# -- checks --------------------------------------------------------------------------------------
def assert_good_duration(value: Any, where: str) -> None:
    assert isinstance(value, float) and math.isfinite(value) and value >= 0, (where, value)


def assert_sane_alerts(alerts) -> None:
    for key, seconds in alerts.details.items():
        assert_good_duration(seconds, f"details.{key}")
    for key, limit in alerts.thresholds.items():
        assert isinstance(limit, float) and math.isfinite(limit) and limit > 0, (key, limit)
        if alerts.missing.get(key):
            assert alerts.details[key] >= limit
    for check in LIVENESS_CHECKS:
        assert isinstance(getattr(alerts, check.idle_flag), bool)
    if not alerts.enabled:
        assert not alerts.any_idle and alerts.details == {} and alerts.missing == {}
    json.dumps(dataclasses.asdict(alerts), allow_nan=False)


def assert_sane_block(block: Any) -> None:
    assert block["status"] in STATUSES
    json.dumps(block, allow_nan=False)
    assert block["age_seconds"] is None or (math.isfinite(block["age_seconds"]) and block["age_seconds"] >= 0)
    assert math.isfinite(block["max_age_seconds"]) and block["max_age_seconds"] > 0
    live = block["runtime_diagnostics"]["liveness"]
    for key, seconds in live["details"].items():
        assert_good_duration(float(seconds), f"liveness.details.{key}")
        assert not isinstance(seconds, bool)
    for flag in ("idle_signals", "idle_orders", "idle_exits", "idle_router", "idle_exit_scans", "enabled"):
        assert isinstance(live[flag], bool)
    for name in ("veto_counters", "exit_pipeline"):
        for key, value in block["runtime_diagnostics"][name].items():
            if key.startswith("total_") or key.endswith("_count"):
                assert isinstance(value, int) and not isinstance(value, bool) and value >= 0, (key, value)


_NUMBER_IN_TEXT = re.compile(r"(?<![A-Za-z\\])-\d|nan|inf(?!o)", re.IGNORECASE)


def assert_panel_renders(block: Any) -> None:
    """Every pure helper of the risk panel accepts ``block``; durations shown are never negative or NaN."""
    for row in risk_panel.liveness_rows(block, "http://127.0.0.1:16686"):
        shown = f"{row.text} {row.threshold}"
        assert not _NUMBER_IN_TEXT.search(shown), shown
        assert row.trace_url is None or row.trace_url.startswith("http://127.0.0.1:16686/trace/")
    for row in risk_panel.exit_health_rows(block):
        assert isinstance(row.value, str) and "\n" not in row.value
    for cell in risk_panel.veto_cells(block):
        assert isinstance(cell["vetoes"], int) and cell["vetoes"] > 0
    totals = risk_panel.veto_totals(block)
    gap = totals["last_veto"].rpartition("(")[2]  # "(4m before the snapshot)", when there is one
    assert "(" not in totals["last_veto"] or not _NUMBER_IN_TEXT.search(gap), totals["last_veto"]
    for text in (risk_panel.header_caption(block), risk_panel.status_badge(block)):
        assert isinstance(text, str) and "\n" not in text
    note = risk_panel.banner(block)
    assert note is None or note.level in ("info", "error")
    risk_panel.resolve_jaeger_ui_url(block, None)


# -- liveness --------------------------------------------------------------------------------------
@EXAMPLES
@given(cfg=liveness_configs(), now=NOW_VALUES,
       timestamps=st.dictionaries(st.sampled_from(list(LIVENESS_KEYS) + ["bogus"]), TIMESTAMPS, max_size=6))
def test_compute_liveness_alerts_when_anything_goes_in_then_no_exception_and_durations_finite_non_negative(
        cfg, now, timestamps):
    alerts = compute_liveness_alerts(cfg, now=now, timestamps=timestamps)
    assert_sane_alerts(alerts)


@EXAMPLES
@given(value=TIMESTAMPS)
def test_parse_timestamp_when_anything_then_none_or_aware_utc(value):
    parsed = parse_timestamp(value)
    assert parsed is None or (parsed.tzinfo is not None and parsed.utcoffset() == timedelta(0))


@pytest.fixture
def engine_clock():
    """In-process telemetry whose engine clock says whatever the test sets (reset per example)."""
    moment = {"t": NOW}
    telemetry = otel_diag.configure(clock=lambda: moment["t"], env={}, instrument=False)
    return telemetry, moment


@settings(EXAMPLES, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(cfg=liveness_configs(), now=NOW_VALUES, clock_now=st.one_of(st.floats(0, 2.5e11), NUMBERS),
       event_times=st.dictionaries(st.sampled_from(sorted(sc.EVENTS)),
                                   st.one_of(st.floats(-1e12, 1e12), st.floats(allow_nan=True, allow_infinity=True),
                                             st.integers(-(10 ** 20), 10 ** 20)), max_size=6))
def test_runtime_diagnostics_block_when_clock_and_config_are_odd_then_strict_json_and_no_negative_duration(
        engine_clock, cfg, now, clock_now, event_times):
    # Arrange: events stamped by an engine clock that said these times
    telemetry, moment = engine_clock
    telemetry.state.reset()
    for event, t in event_times.items():
        moment["t"] = t
        telemetry.state.stamp(event)
    moment["t"] = clock_now

    # Act
    state: dict = {}
    block = write_runtime_diagnostics_state(state, cfg, now=now)

    # Assert
    json.dumps(state, allow_nan=False)
    for key, seconds in block["liveness"]["details"].items():
        assert_good_duration(seconds, key)
    assert_sane_alerts(compute_liveness_alerts(cfg, now=now))


# -- the state-file loader and the panel --------------------------------------------------------------
@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("properties")


@EXAMPLES
@given(doc=DOCUMENTS, now=st.one_of(st.none(), NUMBERS, NAIVE, AWARE), max_age=st.one_of(st.none(), NUMBERS))
def test_load_runtime_diagnostics_state_when_file_holds_random_json_then_well_formed_block_and_panel_renders(
        scratch, doc, now, max_age):
    # Arrange: random JSON on disk (NaN and Infinity included, as a sloppy writer would put them)
    with open(os.path.join(scratch, "diagnostics.json"), "w", encoding="utf-8") as fh:
        fh.write(json.dumps(doc, allow_nan=True))

    # Act
    block = load_runtime_diagnostics_state(str(scratch), now=now, max_age_seconds=max_age)

    # Assert
    assert_sane_block(block)
    assert_panel_renders(block)


@EXAMPLES
@given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_load_runtime_diagnostics_state_when_file_holds_random_bytes_then_well_formed_block(scratch, raw):
    with open(os.path.join(scratch, "diagnostics.json"), "wb") as fh:
        fh.write(raw)

    block = load_runtime_diagnostics_state(str(scratch))

    assert_sane_block(block)
    assert_panel_renders(block)


FLOAT_RANGE_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10 ** 20), 10 ** 20),
              st.floats(allow_nan=True, allow_infinity=True),
              st.text(max_size=20), TIMESTAMP_STRINGS),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)


@EXAMPLES
@given(block=st.one_of(FLOAT_RANGE_JSON, spliced_documents(float_range=True),
                       spliced_documents(float_range=True).map(lambda d: {**d, "status": "ok"})))
def test_panel_helpers_when_raw_structures_went_through_the_loader_then_never_raise(block):
    # The panel renders what the loader returns (dashboard/app.py), and the loader's promise — every key,
    # each of its documented type — is what the panel relies on instead of guarding every value again.
    assert_panel_renders(parse_runtime_diagnostics(block, now=NOW))


@EXAMPLES
@given(value=st.one_of(st.text(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10 ** 30), 10 ** 30),
                       st.none(), st.booleans()))
def test_panel_text_helpers_when_anything_then_plain_escaped_text(value):
    escaped = risk_panel.md_escape(value)
    assert "\n" not in escaped and "\r" not in escaped
    assert not re.search(r"(?<!\\)[<>\[\]()*_`#|]", escaped), escaped
    age = risk_panel.format_age(value)
    assert not _NUMBER_IN_TEXT.search(age), age
    assert isinstance(risk_panel.format_time(value), str)
    assert risk_panel.jaeger_trace_url(value, "4bf92f3577b34da6a3ce929d0e0e4736") in (None,) or \
        risk_panel.jaeger_trace_url(value, "4bf92f3577b34da6a3ce929d0e0e4736").startswith(("http://", "https://"))
    assert parse_runtime_diagnostics(value)["status"] in STATUSES


def test_panel_helpers_when_raw_block_holds_an_integer_beyond_float_range_then_never_raise():
    block = {"status": "ok", "runtime_diagnostics": {"liveness": {"details": {"signals": 10 ** 400},
                                                                  "thresholds": {"signals": 600.0}}}}
    risk_panel.liveness_rows(block)
    risk_panel.format_age(10 ** 400)
