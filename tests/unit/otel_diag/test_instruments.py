"""Observable instruments: every reader sees the EventState as it is at collection time."""
from __future__ import annotations

from typing import Dict, List, Tuple

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, Gauge, InMemoryMetricReader, MetricsData, Sum

from otel_diag import semconv as sc
from otel_diag.instruments import COUNTERS, EXIT_GAUGES, StateCell, register_instruments
from otel_diag.state import EventState, ExitGauges

T0 = 1_767_571_200.0


@pytest.fixture
def meter_setup():
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    cell = StateCell()
    register_instruments(provider.get_meter(sc.INSTRUMENTATION_NAME), cell)
    yield reader, cell
    provider.shutdown()


def metrics_of(data: MetricsData) -> Dict[str, object]:
    """Metrics by name (a collection with no points at all is None)."""
    if data is None:
        return {}
    return {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def points(data: MetricsData, name: str) -> List[Tuple[dict, float]]:
    metric = metrics_of(data).get(name)
    return [] if metric is None else [(dict(p.attributes), p.value) for p in metric.data.data_points]


def test_collect_when_state_has_events_then_counters_are_monotonic_sums_with_units(meter_setup):
    reader, cell = meter_setup
    cell.state = state = EventState(lambda: T0)
    for name, _ in COUNTERS:
        state.hit(state.series(name), None)

    found = metrics_of(reader.get_metrics_data())

    for name, _ in COUNTERS:
        data = found[name].data
        assert isinstance(data, Sum) and data.is_monotonic
        assert data.aggregation_temporality is AggregationTemporality.CUMULATIVE
        assert found[name].unit == sc.METRIC_UNITS[name]
        assert [p.value for p in data.data_points] == [1]


def test_collect_when_events_stamped_then_last_event_gauge_value_is_the_clock_time(meter_setup):
    reader, cell = meter_setup
    times = iter([T0 + 60, T0 + 120])
    cell.state = state = EventState(lambda: next(times))
    state.stamp(sc.EVENT_SIGNAL)
    state.stamp(sc.EVENT_EXIT_SCAN)

    data = reader.get_metrics_data()

    assert isinstance(metrics_of(data)[sc.METRIC_LAST_EVENT_TIME].data, Gauge)
    assert metrics_of(data)[sc.METRIC_LAST_EVENT_TIME].unit == "s"
    assert sorted(points(data, sc.METRIC_LAST_EVENT_TIME), key=lambda p: p[1]) == [
        ({sc.ATTR_EVENT: sc.EVENT_SIGNAL}, T0 + 60), ({sc.ATTR_EVENT: sc.EVENT_EXIT_SCAN}, T0 + 120)]


def test_collect_when_exit_gauges_set_then_each_gauge_reports_its_field(meter_setup):
    reader, cell = meter_setup
    cell.state = state = EventState(lambda: T0)
    state.set_exit_gauges(ExitGauges(open_positions=4, tp_sl_registered=3, tp_sl_orphaned=1, coverage=0.75,
                                     missing=(("SOLUSDT", "short"),), underwater_unprotected=(("SOLUSDT", "short"),)))

    data = reader.get_metrics_data()

    assert {name: points(data, name) for name, _, _ in EXIT_GAUGES} == {
        sc.METRIC_POSITIONS_OPEN: [({}, 4)],
        sc.METRIC_TP_SL_REGISTERED: [({}, 3)],
        sc.METRIC_TP_SL_MISSING: [({}, 1)],
        sc.METRIC_TP_SL_ORPHANED: [({}, 1)],
        sc.METRIC_UNDERWATER_UNPROTECTED: [({}, 1)],
        sc.METRIC_TP_SL_COVERAGE: [({}, 0.75)],
    }


def test_collect_when_no_exit_scan_yet_then_no_exit_gauge_points(meter_setup):
    reader, cell = meter_setup
    cell.state = EventState(lambda: T0)

    data = reader.get_metrics_data()

    assert all(points(data, name) == [] for name, _, _ in EXIT_GAUGES)


def test_collect_when_cell_unbound_then_no_points_at_all(meter_setup):
    reader, cell = meter_setup
    state = EventState(lambda: T0)
    state.hit(state.series(sc.METRIC_SIGNALS, {sc.ATTR_SYMBOL: "BTCUSDT"}), sc.EVENT_SIGNAL)
    state.set_exit_gauges(ExitGauges(open_positions=1))
    cell.state = None

    data = reader.get_metrics_data()

    assert all(points(data, name) == [] for name in sc.METRIC_UNITS)


def test_collect_when_cell_points_at_new_state_then_same_instruments_report_it(meter_setup):
    reader, cell = meter_setup
    first, second = EventState(lambda: T0), EventState(lambda: T0 + 60)
    first.hit(first.series(sc.METRIC_ORDERS, {sc.ATTR_SYMBOL: "BTCUSDT"}), sc.EVENT_ORDER)
    for _ in range(3):
        second.hit(second.series(sc.METRIC_ORDERS, {sc.ATTR_SYMBOL: "ETHUSDT"}), sc.EVENT_ORDER)

    cell.state = first
    before = points(reader.get_metrics_data(), sc.METRIC_ORDERS)
    cell.state = second
    after = reader.get_metrics_data()

    assert before == [({sc.ATTR_SYMBOL: "BTCUSDT"}, 1)]
    assert ({sc.ATTR_SYMBOL: "ETHUSDT"}, 3) in points(after, sc.METRIC_ORDERS)
    assert points(after, sc.METRIC_LAST_EVENT_TIME) == [({sc.ATTR_EVENT: sc.EVENT_ORDER}, T0 + 60)]


def test_collect_when_counted_between_collections_then_reports_the_running_total(meter_setup):
    reader, cell = meter_setup
    cell.state = state = EventState(lambda: T0)
    series = state.series(sc.METRIC_EXIT_SCANS)

    state.hit(series, sc.EVENT_EXIT_SCAN)
    first = points(reader.get_metrics_data(), sc.METRIC_EXIT_SCANS)
    state.hit(series, sc.EVENT_EXIT_SCAN)
    state.hit(series, sc.EVENT_EXIT_SCAN)
    second = points(reader.get_metrics_data(), sc.METRIC_EXIT_SCANS)

    assert (first, second) == ([({}, 1)], [({}, 3)])
