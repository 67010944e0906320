"""DiagnosticsMetricReader and derive(): the diagnostics read back out of the metric points."""
from __future__ import annotations

import pytest
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import otel_diag
from otel_diag import semconv as sc
from otel_diag.instruments import StateCell, register_instruments
from otel_diag.reader import OTHER, DerivedMetrics, DiagnosticsMetricReader, derive
from otel_diag.state import EventState, ExitGauges

T0 = 1_767_571_200.0


@pytest.fixture
def telemetry(clock):
    """In-process telemetry: providers and the diagnostics reader, no exporter, engine not patched."""
    return otel_diag.configure(clock=clock, instrument=False, env={})


def veto(state: EventState, reason: str, symbol: str) -> None:
    state.hit(state.series(sc.METRIC_VETOES, {sc.ATTR_VETO_REASON: reason, sc.ATTR_SYMBOL: symbol}), sc.EVENT_VETO)


def test_snapshot_when_nothing_happened_then_empty_view(telemetry):
    derived = telemetry.snapshot()

    assert (derived.total_signals, derived.total_orders, derived.total_vetoes) == (0, 0, 0)
    assert derived.last_event_times == {} and derived.router_events == {}
    assert not derived.exit.known


def test_snapshot_when_vetoes_recorded_then_counts_by_reason_symbol_and_both(telemetry):
    state = telemetry.state
    for reason, symbol in [("min_notional", "BTCUSDT"), ("min_notional", "ETHUSDT"), ("min_notional", "BTCUSDT"),
                           ("per_symbol_cap", "ETHUSDT")]:
        veto(state, reason, symbol)

    derived = telemetry.snapshot()

    assert derived.vetoes == {("min_notional", "BTCUSDT"): 2, ("min_notional", "ETHUSDT"): 1,
                              ("per_symbol_cap", "ETHUSDT"): 1}
    assert derived.vetoes_by_reason() == {"min_notional": 3, "per_symbol_cap": 1}
    assert derived.vetoes_by_symbol() == {"BTCUSDT": 2, "ETHUSDT": 2}
    assert derived.vetoes_by_reason_symbol() == {"min_notional": {"BTCUSDT": 2, "ETHUSDT": 1},
                                                 "per_symbol_cap": {"ETHUSDT": 1}}
    assert derived.total_vetoes == 4


def test_snapshot_when_signals_orders_and_router_events_then_totals_and_last_times(telemetry, clock):
    state = telemetry.state
    state.hit(state.series(sc.METRIC_SIGNALS, {sc.ATTR_SYMBOL: "BTCUSDT"}), sc.EVENT_SIGNAL)
    clock.now = T0 + 60
    state.hit(state.series(sc.METRIC_SIGNALS, {sc.ATTR_SYMBOL: "SOLUSDT"}), sc.EVENT_SIGNAL)
    state.hit(state.series(sc.METRIC_ORDERS, {sc.ATTR_SYMBOL: "SOLUSDT"}), sc.EVENT_ORDER)
    for event in (sc.ROUTER_ROUTE, sc.ROUTER_TWAP_SLICE, sc.ROUTER_TWAP_SLICE, sc.ROUTER_FILL, sc.ROUTER_REJECT):
        state.hit(state.series(sc.METRIC_ROUTER_EVENTS, {sc.ATTR_ROUTER_EVENT: event}), sc.EVENT_ROUTER)

    derived = telemetry.snapshot()

    assert derived.signals_by_symbol == {"BTCUSDT": 1, "SOLUSDT": 1}
    assert derived.orders_by_symbol == {"SOLUSDT": 1}
    assert derived.router_events == {"route": 1, "twap_slice": 2, "fill": 1, "reject": 1}
    assert derived.last_event_times == {sc.EVENT_SIGNAL: T0 + 60, sc.EVENT_ORDER: T0 + 60, sc.EVENT_ROUTER: T0 + 60}


def test_snapshot_when_exit_scan_reported_then_exit_gauges_scans_and_triggers(telemetry, clock):
    state = telemetry.state
    clock.now = T0 + 120
    state.hit(state.series(sc.METRIC_EXIT_SCANS), sc.EVENT_EXIT_SCAN)
    state.hit(state.series(sc.METRIC_EXIT_TRIGGERS, {sc.ATTR_EXIT_REASON: "take_profit"}), sc.EVENT_EXIT_TRIGGER)
    state.hit(state.series(sc.METRIC_EXIT_TRIGGERS, {sc.ATTR_EXIT_REASON: "stop_loss"}), sc.EVENT_EXIT_TRIGGER)
    state.set_exit_gauges(ExitGauges(open_positions=3, tp_sl_registered=2, tp_sl_orphaned=1, coverage=2 / 3,
                                     missing=(("XRPUSDT", "long"),), underwater_unprotected=(("XRPUSDT", "long"),)))

    derived = telemetry.snapshot()

    assert (derived.exit_scans, derived.exit_triggers) == (1, 2)
    ex = derived.exit
    assert ex.known
    assert (ex.open_positions, ex.tp_sl_registered, ex.tp_sl_missing, ex.tp_sl_orphaned,
            ex.underwater_without_tp_sl) == (3, 2, 1, 1, 1)
    assert ex.coverage == pytest.approx(2 / 3)
    assert derived.last_event_times[sc.EVENT_EXIT_TRIGGER] == T0 + 120
    assert derived.extras["missing_keys"] == [("XRPUSDT", "long")]
    assert derived.extras["underwater_keys"] == [("XRPUSDT", "long")]


def test_snapshot_when_series_cap_hit_then_overflow_flagged_and_nothing_lost(clock):
    telemetry = otel_diag.configure(clock=clock, instrument=False, env={}, max_series_per_metric=2)
    state = telemetry.state
    for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"):
        veto(state, "min_notional", symbol)

    derived = telemetry.snapshot()

    assert derived.overflow == {sc.METRIC_VETOES: True}
    assert derived.extras["series_overflow"] == {sc.METRIC_VETOES: True}
    assert derived.total_vetoes == 4
    assert derived.vetoes[(OTHER, OTHER)] == 2


def test_derive_when_points_of_another_scope_then_ignores_them():
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    state = EventState(lambda: T0)
    state.hit(state.series(sc.METRIC_SIGNALS, {sc.ATTR_SYMBOL: "BTCUSDT"}), sc.EVENT_SIGNAL)
    register_instruments(provider.get_meter(sc.INSTRUMENTATION_NAME), StateCell(state))
    provider.get_meter("someone.else").create_observable_counter(
        sc.METRIC_SIGNALS, callbacks=[lambda options: [Observation(1000, {sc.ATTR_SYMBOL: "BTCUSDT"})]])
    try:
        data = reader.get_metrics_data()
    finally:
        provider.shutdown()

    ours = derive(data)
    theirs = derive(data, scope_name="someone.else")

    assert ours.signals_by_symbol == {"BTCUSDT": 1}
    assert ours.last_event_times == {sc.EVENT_SIGNAL: T0}
    assert theirs.signals_by_symbol == {"BTCUSDT": 1000} and theirs.last_event_times == {}


def test_derive_when_no_data_then_empty_view():
    derived = derive(None, extras={"k": "v"})

    assert derived.total_signals == 0 and derived.vetoes == {} and not derived.exit.known
    assert derived.extras == {"k": "v"}


def test_reader_when_not_registered_then_latest_is_the_empty_default():
    assert DiagnosticsMetricReader().latest == DerivedMetrics()


def test_snapshot_when_traced_events_then_extras_carry_hex_trace_ids(telemetry):
    telemetry.state.stamp(sc.EVENT_ORDER, trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736)

    derived = telemetry.snapshot()

    assert derived.extras["last_trace_ids"] == {sc.EVENT_ORDER: "4bf92f3577b34da6a3ce929d0e0e4736"}


def test_snapshot_when_after_shutdown_then_returns_the_last_view_without_raising(telemetry):
    telemetry.state.stamp(sc.EVENT_SIGNAL)
    before = telemetry.snapshot()

    assert otel_diag.shutdown() is True
    after = telemetry.snapshot()

    assert after == before
    assert after.last_event_times == {sc.EVENT_SIGNAL: T0}
