"""The reader's snapshot from the instruments' observations equals a derive of an SDK collection.

``DiagnosticsMetricReader.snapshot()``, bound by ``configure()`` to the StateCell of its provider's
instruments, derives from ``instruments.observations`` — the pairs the callbacks hand the SDK —
instead of collecting through the SDK. Each test compares it with ``derive()`` of the points an
SDK reader of the same MeterProvider collects (an ``InMemoryMetricReader`` registered beside it),
and checks the figures themselves where they matter.
"""
from __future__ import annotations

import math
from typing import Dict, List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider, ObservableCounter, ObservableGauge
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import otel_diag
from execution.diagnostics_metrics import record_router_event, update_exit_pipeline_status
from otel_diag import instruments
from otel_diag import semconv as sc
from otel_diag.instrumentor import ExecutionInstrumentor, bind_instruments, cell_for
from otel_diag.instruments import OBSERVERS, StateCell, observations, register_instruments
from otel_diag.reader import OTHER, SDK_CARDINALITY_LIMIT, DerivedMetrics, derive, derive_observations
from otel_diag.state import EventState, ExitGauges
from tests.unit.otel_diag.conftest import Clock

T0 = 1_767_571_200.0


def configured(clock, **kwargs) -> Tuple["otel_diag.Telemetry", InMemoryMetricReader]:
    """In-process telemetry with an SDK reader of the same MeterProvider beside the diagnostics reader."""
    sdk_reader = InMemoryMetricReader()
    telemetry = otel_diag.configure(clock=clock, instrument=False, env={}, metric_readers=[sdk_reader], **kwargs)
    return telemetry, sdk_reader


def sdk_view(telemetry, sdk_reader: InMemoryMetricReader) -> DerivedMetrics:
    """derive() of what an SDK collection of the provider's instruments gives now."""
    return derive(sdk_reader.get_metrics_data(), extras=telemetry.reader.extras())


def both(telemetry, sdk_reader) -> Tuple[DerivedMetrics, DerivedMetrics]:
    return telemetry.snapshot(), sdk_view(telemetry, sdk_reader)


def veto(state: EventState, reason: str, symbol: str) -> None:
    state.hit(state.series(sc.METRIC_VETOES, {sc.ATTR_VETO_REASON: reason, sc.ATTR_SYMBOL: symbol}), sc.EVENT_VETO)


def test_configure_when_enabled_then_reader_bound_to_the_cell_of_its_provider(clock):
    telemetry, _ = configured(clock)

    assert telemetry.reader.bound is cell_for(telemetry.meter_provider)
    assert telemetry.reader.bound.state is telemetry.state


def test_configure_when_sdk_disabled_then_reader_unbound_and_snapshot_empty(clock):
    telemetry = otel_diag.configure(clock=clock, env={"OTEL_SDK_DISABLED": "true"})
    telemetry.state.stamp(sc.EVENT_SIGNAL)

    assert telemetry.reader.bound is None
    assert telemetry.snapshot() == DerivedMetrics()


def test_snapshot_when_nothing_recorded_then_equals_the_sdk_view_and_is_empty(clock):
    telemetry, sdk_reader = configured(clock)

    ours, theirs = both(telemetry, sdk_reader)

    assert ours == theirs
    assert ours.collected and ours.total_signals == 0 and ours.last_event_times == {} and not ours.exit.known


def test_snapshot_when_realistic_mix_then_equals_the_sdk_view_with_the_recorded_figures(clock):
    # Arrange: signals, orders, vetoes by reason × symbol, router events, exit scans, triggers, exit gauges
    telemetry, sdk_reader = configured(clock)
    state = telemetry.state
    for i, symbol in enumerate(("BTCUSDT", "ETHUSDT", "SOLUSDT")):
        clock.now = T0 + i
        state.hit(state.series(sc.METRIC_SIGNALS, {sc.ATTR_SYMBOL: symbol}), sc.EVENT_SIGNAL, trace_id=0xABC + i)
        state.hit(state.series(sc.METRIC_ORDERS, {sc.ATTR_SYMBOL: symbol}), sc.EVENT_ORDER)
        for reason in ("min_notional", "per_symbol_cap")[: i + 1]:
            veto(state, reason, symbol)
    for event in (sc.ROUTER_ROUTE, sc.ROUTER_TWAP_SLICE, sc.ROUTER_TWAP_SLICE, sc.ROUTER_FILL, sc.ROUTER_REJECT):
        record_router_event(event)
    clock.now = T0 + 60
    state.hit(state.series(sc.METRIC_EXIT_SCANS), sc.EVENT_EXIT_SCAN)
    state.hit(state.series(sc.METRIC_EXIT_TRIGGERS, {sc.ATTR_EXIT_REASON: "stop_loss"}), sc.EVENT_EXIT_TRIGGER)
    update_exit_pipeline_status(open_positions_count=4, tp_sl_registered_count=2, tp_sl_orphan_count=1,
                                missing_tp_sl_keys=[("XRPUSDT", "long"), ("ADAUSDT", "short")],
                                underwater_without_tp_sl_keys=[("XRPUSDT", "long")])

    # Act
    ours, theirs = both(telemetry, sdk_reader)

    # Assert
    assert ours == theirs
    assert ours.signals_by_symbol == ours.orders_by_symbol == {"BTCUSDT": 1, "ETHUSDT": 1, "SOLUSDT": 1}
    assert ours.vetoes_by_reason() == {"min_notional": 3, "per_symbol_cap": 2}
    assert ours.router_events == {"route": 1, "twap_slice": 2, "fill": 1, "reject": 1}
    assert (ours.exit_scans, ours.exit_triggers) == (1, 1)
    assert (ours.exit.known, ours.exit.open_positions, ours.exit.tp_sl_missing, ours.exit.underwater_without_tp_sl,
            ours.exit.tp_sl_orphaned, ours.exit.coverage) == (True, 4, 2, 1, 1, 0.5)
    assert ours.last_event_times[sc.EVENT_SIGNAL] == T0 + 2 and ours.last_event_times[sc.EVENT_EXIT_SCAN] == T0 + 60
    assert ours.extras["last_trace_ids"][sc.EVENT_SIGNAL] == format(0xABC + 2, "032x")
    assert ours.overflow == {}


def test_snapshot_when_exit_gauges_derived_lazily_from_a_scan_then_equals_the_sdk_view(clock):
    telemetry, sdk_reader = configured(clock)
    telemetry.state.set_exit_source(lambda n: ExitGauges(open_positions=n, tp_sl_registered=n - 1, coverage=(n - 1) / n,
                                                         missing=(("DOGEUSDT", "long"),)), 5)

    ours, theirs = both(telemetry, sdk_reader)

    assert ours == theirs
    assert (ours.exit.open_positions, ours.exit.tp_sl_missing) == (5, 1)


def test_snapshot_when_gauge_values_not_finite_then_left_out_as_the_sdk_leaves_them(clock):
    clock.now = math.inf
    telemetry, sdk_reader = configured(clock)
    telemetry.state.stamp(sc.EVENT_SIGNAL)
    telemetry.state.set_exit_gauges(ExitGauges(open_positions=2, tp_sl_registered=1, coverage=math.nan))

    ours, theirs = both(telemetry, sdk_reader)

    assert ours == theirs
    assert ours.last_event_times == {} and ours.exit.open_positions == 2 and ours.exit.coverage == 0.0


@pytest.mark.parametrize("cap, distinct", [
    (2, 4),  # otel_diag's cap well below the SDK's
    (SDK_CARDINALITY_LIMIT, SDK_CARDINALITY_LIMIT),  # exactly at both caps: nothing folded
    (SDK_CARDINALITY_LIMIT, 3 * SDK_CARDINALITY_LIMIT),  # the default: otel_diag folds, the SDK's overflow set is ours
    (SDK_CARDINALITY_LIMIT + 500, SDK_CARDINALITY_LIMIT + 300),  # beyond the SDK's cap only: the SDK folds
    (SDK_CARDINALITY_LIMIT + 500, 3 * SDK_CARDINALITY_LIMIT),  # both fold
])
def test_snapshot_when_at_or_beyond_the_cardinality_caps_then_equals_the_sdk_view_and_totals_exact(
        clock, cap, distinct):
    telemetry, sdk_reader = configured(clock, max_series_per_metric=cap)
    for i in range(distinct):
        veto(telemetry.state, f"reason_{i}", f"SYM{i % 7}")

    ours, theirs = both(telemetry, sdk_reader)

    assert ours == theirs
    assert ours.total_vetoes == distinct
    kept = min(cap, SDK_CARDINALITY_LIMIT)
    if distinct > kept:
        assert ours.overflow == {sc.METRIC_VETOES: True}
        assert len(ours.vetoes) == kept + 1 and ours.vetoes[(OTHER, OTHER)] == distinct - kept
    else:
        assert ours.overflow == {} and len(ours.vetoes) == distinct


def test_snapshot_when_state_rebound_or_unbound_then_follows_the_cell_and_equals_the_sdk_view(clock):
    # Arrange
    telemetry, sdk_reader = configured(clock)
    provider = telemetry.meter_provider
    veto(telemetry.state, "min_notional", "BTCUSDT")
    first = both(telemetry, sdk_reader)
    other = EventState(clock)
    for _ in range(3):
        other.hit(other.series(sc.METRIC_ORDERS, {sc.ATTR_SYMBOL: "ETHUSDT"}), sc.EVENT_ORDER)

    # Act: another state through the same instruments, then none, then the first again
    bind_instruments([provider], other)
    rebound = both(telemetry, sdk_reader)
    bind_instruments([provider], None)
    unbound = both(telemetry, sdk_reader)
    bind_instruments([provider], telemetry.state)
    back = both(telemetry, sdk_reader)

    # Assert
    for ours, theirs in (first, rebound, unbound, back):
        assert ours == theirs
    assert rebound[0].orders_by_symbol == {"ETHUSDT": 3} and rebound[0].vetoes == {}
    assert unbound[0].vetoes == {} and unbound[0].last_event_times == {}
    assert back[0].vetoes == {("min_notional", "BTCUSDT"): 1}


def test_snapshot_when_instrumentor_uninstruments_and_reinstruments_then_follows_and_equals_the_sdk_view(clock):
    # Arrange: configure() patches the engine through the instrumentor
    sdk_reader = InMemoryMetricReader()
    telemetry = otel_diag.configure(clock=clock, env={}, metric_readers=[sdk_reader], tracing=False)
    veto(telemetry.state, "min_notional", "BTCUSDT")
    inst = ExecutionInstrumentor()

    # Act
    inst.uninstrument()
    after_uninstrument = both(telemetry, sdk_reader)
    fresh = EventState(clock)
    fresh.stamp(sc.EVENT_EXIT_SCAN)
    inst.instrument(meter_providers=[telemetry.meter_provider], clock=clock, event_state=fresh, tracing=False,
                    skip_dep_check=True)
    after_reinstrument = both(telemetry, sdk_reader)

    # Assert
    # Unpatched, the instruments still report what was counted (as a contrib instrumentation's counters do).
    assert after_uninstrument[0] == after_uninstrument[1]
    assert after_uninstrument[0].vetoes == {("min_notional", "BTCUSDT"): 1}
    assert after_reinstrument[0] == after_reinstrument[1]
    assert after_reinstrument[0].last_event_times == {sc.EVENT_EXIT_SCAN: T0}


def test_snapshot_when_reader_unbound_then_collects_through_the_sdk_with_the_same_result(clock):
    telemetry, sdk_reader = configured(clock)
    veto(telemetry.state, "min_notional", "BTCUSDT")
    observed = telemetry.snapshot()

    telemetry.reader.bind(None)
    collected = telemetry.snapshot()

    assert collected == observed == sdk_view(telemetry, sdk_reader)


def test_collect_when_bound_then_sdk_path_still_updates_latest(clock):
    telemetry, _ = configured(clock)
    veto(telemetry.state, "min_notional", "BTCUSDT")

    telemetry.reader.collect()

    assert telemetry.reader.latest.vetoes == {("min_notional", "BTCUSDT"): 1}


def test_callbacks_and_observations_when_an_observer_is_replaced_then_both_report_the_replacement(monkeypatch):
    # Arrange: one observer table read by the SDK callbacks and by observations()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    cell = StateCell(EventState(lambda: T0))
    register_instruments(provider.get_meter(sc.INSTRUMENTATION_NAME), cell)
    monkeypatch.setitem(OBSERVERS, sc.METRIC_SIGNALS, lambda state: [(7, {sc.ATTR_SYMBOL: "PATCHED"})])
    try:
        # Act
        collected = derive(reader.get_metrics_data())
        observed = derive_observations(observations(cell))
    finally:
        provider.shutdown()

    # Assert
    assert collected.signals_by_symbol == observed.signals_by_symbol == {"PATCHED": 7}
    assert set(observations(cell)) == set(OBSERVERS) == set(sc.METRIC_UNITS)


def test_callbacks_and_observations_when_an_observer_raises_then_both_report_nothing_for_it(monkeypatch):
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    state = EventState(lambda: T0)
    state.hit(state.series(sc.METRIC_ORDERS, {sc.ATTR_SYMBOL: "BTCUSDT"}), sc.EVENT_ORDER)
    cell = StateCell(state)
    register_instruments(provider.get_meter(sc.INSTRUMENTATION_NAME), cell)

    def broken(state):
        raise RuntimeError("boom")

    monkeypatch.setitem(OBSERVERS, sc.METRIC_ORDERS, broken)
    try:
        collected = derive(reader.get_metrics_data())
        observed = derive_observations(observations(cell))
    finally:
        provider.shutdown()

    assert collected == observed
    assert observed.orders_by_symbol == {} and observed.last_event_times == {sc.EVENT_ORDER: T0}


def test_observations_when_cell_unbound_then_empty():
    assert observations(StateCell()) == {}
    assert instruments.observe(sc.METRIC_SIGNALS, EventState(lambda: T0)) == []


# -- property: any event stream, any caps -------------------------------------------------------
SYMBOLS = st.sampled_from(["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "", "ünï", "1"])
REASONS = st.sampled_from(["min_notional", "per_symbol_cap", "max_gross_exposure", "notional=1.5", OTHER])
EVENTS = st.one_of(
    st.tuples(st.just("signal"), SYMBOLS),
    st.tuples(st.just("order"), SYMBOLS),
    st.tuples(st.just("veto"), REASONS, SYMBOLS),
    st.tuples(st.just("router"), st.sampled_from(sc.ROUTER_EVENTS + ("odd",))),
    st.tuples(st.just("scan")),
    st.tuples(st.just("trigger"), st.sampled_from(["take_profit", "stop_loss", "trailing"])),
    st.tuples(st.just("gauges"), st.integers(0, 50), st.integers(0, 50), st.integers(0, 5),
              st.lists(SYMBOLS, max_size=3)),
    st.tuples(st.just("tick"), st.floats(-5.0, 120.0)),
    st.tuples(st.just("trace"), st.sampled_from(sorted(sc.EVENTS)), st.integers(1, 2 ** 128 - 1)),
    st.tuples(st.just("check")),
)


def apply(state: EventState, clock: Clock, event: tuple) -> None:
    kind = event[0]
    if kind == "signal":
        state.hit(state.series(sc.METRIC_SIGNALS, {sc.ATTR_SYMBOL: event[1]}), sc.EVENT_SIGNAL)
    elif kind == "order":
        state.hit(state.series(sc.METRIC_ORDERS, {sc.ATTR_SYMBOL: event[1]}), sc.EVENT_ORDER)
    elif kind == "veto":
        veto(state, event[1], event[2])
    elif kind == "router":
        state.hit(state.series(sc.METRIC_ROUTER_EVENTS, {sc.ATTR_ROUTER_EVENT: event[1]}), sc.EVENT_ROUTER)
    elif kind == "scan":
        state.hit(state.series(sc.METRIC_EXIT_SCANS), sc.EVENT_EXIT_SCAN)
    elif kind == "trigger":
        state.hit(state.series(sc.METRIC_EXIT_TRIGGERS, {sc.ATTR_EXIT_REASON: event[1]}), sc.EVENT_EXIT_TRIGGER)
    elif kind == "gauges":
        open_n, registered, orphaned, missing = event[1], min(event[1], event[2]), event[3], event[4]
        keys = tuple((s, "long") for s in missing)
        state.set_exit_gauges(ExitGauges(open_positions=open_n, tp_sl_registered=registered, tp_sl_orphaned=orphaned,
                                         coverage=registered / open_n if open_n else 0.0, missing=keys,
                                         underwater_unprotected=keys[:1]))
    elif kind == "tick":
        clock.now += event[1]
    elif kind == "trace":
        state.stamp(event[1], trace_id=event[2])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=st.lists(EVENTS, max_size=80), state_cap=st.integers(1, 12), sdk_limit=st.integers(1, 12))
def test_observations_when_any_event_stream_then_derive_equals_the_sdk_points_derive(stream, state_cap, sdk_limit):
    """Any stream, any EventState cap, any SDK cardinality limit: checked after every "check" and at the end."""
    # Arrange: an SDK reader with its own cardinality limit, the instruments, one state
    limits = {ObservableCounter: sdk_limit, ObservableGauge: sdk_limit}
    reader = InMemoryMetricReader(cardinality_limits=limits)
    provider = MeterProvider(metric_readers=[reader])
    clock = Clock()
    state = EventState(clock, max_series_per_metric=state_cap)
    cell = StateCell(state)
    register_instruments(provider.get_meter(sc.INSTRUMENTATION_NAME), cell)
    views: List[Tuple[DerivedMetrics, DerivedMetrics]] = []
    try:
        # Act
        for event in stream + [("check",)]:
            apply(state, clock, event)
            if event[0] == "check":
                views.append((derive_observations(observations(cell), cardinality_limit=sdk_limit),
                              derive(reader.get_metrics_data())))
    finally:
        provider.shutdown()

    # Assert: equal, and the totals are what was recorded whatever got folded
    for ours, theirs in views:
        assert ours == theirs
    final = views[-1][0]
    counts: Dict[str, int] = {}
    for event in stream:
        counts[event[0]] = counts.get(event[0], 0) + 1
    assert final.total_signals == counts.get("signal", 0) and final.total_orders == counts.get("order", 0)
    assert final.total_vetoes == counts.get("veto", 0)
    assert sum(final.router_events.values()) == counts.get("router", 0)
    assert (final.exit_scans, final.exit_triggers) == (counts.get("scan", 0), counts.get("trigger", 0))
    assert final.exit.known == ("gauges" in counts)
