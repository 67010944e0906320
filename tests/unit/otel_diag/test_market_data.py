"""Per-symbol market data: the stamp a cycle makes, what the instruments report, what the reader derives.

``EventState.stamp_prices`` is the hot path (once a cycle, every configured symbol); the gauge
``trading.market_data.last_update.time{trading.symbol, trading.market_data.update}`` reports it; the
reader derives ``DerivedMetrics.market_data`` from the observations, equal to a derive of an SDK
collection of the same provider.
"""
from __future__ import annotations

from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import otel_diag
from otel_diag import semconv as sc
from otel_diag.instruments import StateCell, observations
from otel_diag.reader import derive
from otel_diag.state import EventState
from tests.unit.otel_diag.conftest import T0, Clock

BAR, CHANGE = sc.MARKET_DATA_BAR, sc.MARKET_DATA_PRICE_CHANGE


def test_stamp_prices_when_first_bar_then_both_times_are_now():
    clock = Clock()
    state = EventState(clock)

    state.stamp_prices({"BTCUSDT": 64_000.0, "ETHUSDT": 3_200.0})

    assert state.market_data_times() == {"BTCUSDT": (T0, T0), "ETHUSDT": (T0, T0)}


def test_stamp_prices_when_price_unchanged_then_only_the_bar_time_moves():
    clock = Clock()
    state = EventState(clock)
    state.stamp_prices({"BTCUSDT": 64_000.0, "ETHUSDT": 3_200.0})

    clock.now = T0 + 60
    state.stamp_prices({"BTCUSDT": 64_010.0, "ETHUSDT": 3_200.0})
    clock.now = T0 + 120
    state.stamp_prices({"BTCUSDT": 64_010.0, "ETHUSDT": 3_201.0})

    assert state.market_data_times() == {"BTCUSDT": (T0 + 120, T0 + 60), "ETHUSDT": (T0 + 120, T0 + 120)}


def test_stamp_prices_when_a_symbol_has_no_bar_then_its_times_stay():
    clock = Clock()
    state = EventState(clock)
    state.stamp_prices({"BTCUSDT": 1.0, "ETHUSDT": 2.0})

    clock.now = T0 + 600
    state.stamp_prices({"BTCUSDT": 1.5})

    assert state.market_data_times()["ETHUSDT"] == (T0, T0)
    assert state.market_data_times()["BTCUSDT"] == (T0 + 600, T0 + 600)


def test_stamp_prices_when_clock_goes_back_then_times_never_go_backwards():
    clock = Clock(T0 + 100)
    state = EventState(clock)
    state.stamp_prices({"BTCUSDT": 1.0})

    clock.now = T0
    state.stamp_prices({"BTCUSDT": 2.0})

    assert state.market_data_times() == {"BTCUSDT": (T0 + 100, T0 + 100)}


def test_stamp_prices_when_more_symbols_than_the_cap_then_bounded_and_marked_overflowed():
    state = EventState(Clock(), max_series_per_metric=3)

    state.stamp_prices({f"S{i}": float(i + 1) for i in range(10)})

    assert sorted(state.market_data_times()) == ["S0", "S1", "S2"]
    assert state.overflowed() == {sc.METRIC_MARKET_DATA_LAST_UPDATE: True}


def test_reset_when_stamped_then_forgotten():
    state = EventState(Clock())
    state.stamp_prices({"BTCUSDT": 1.0})

    state.reset()

    assert state.market_data_times() == {}


def test_observations_when_stamped_then_one_point_per_symbol_and_update_kind():
    clock = Clock()
    state = EventState(clock)
    state.stamp_prices({"BTCUSDT": 1.0})
    clock.now = T0 + 60
    state.stamp_prices({"BTCUSDT": 1.0})

    points = observations(StateCell(state))[sc.METRIC_MARKET_DATA_LAST_UPDATE]

    assert sorted((attrs[sc.ATTR_MARKET_DATA_UPDATE], value) for value, attrs in points) == [
        (BAR, T0 + 60), (CHANGE, T0)]
    assert {attrs[sc.ATTR_SYMBOL] for _, attrs in points} == {"BTCUSDT"}


def test_snapshot_when_stamped_then_market_data_equals_the_sdk_collection_derive():
    clock = Clock()
    sdk_reader = InMemoryMetricReader()
    telemetry = otel_diag.configure(clock=clock, instrument=False, env={}, metric_readers=[sdk_reader])
    telemetry.state.stamp_prices({"BTCUSDT": 1.0, "ETHUSDT": 2.0})
    clock.now = T0 + 60
    telemetry.state.stamp_prices({"BTCUSDT": 1.0, "ETHUSDT": 2.5})

    snapshot = telemetry.snapshot()
    collected = derive(sdk_reader.get_metrics_data())

    assert snapshot.market_data == {"BTCUSDT": {BAR: T0 + 60, CHANGE: T0}, "ETHUSDT": {BAR: T0 + 60, CHANGE: T0 + 60}}
    assert collected.market_data == snapshot.market_data


def test_snapshot_when_nothing_stamped_then_no_market_data():
    telemetry = otel_diag.configure(clock=Clock(), instrument=False, env={})

    assert telemetry.snapshot().market_data == {}
