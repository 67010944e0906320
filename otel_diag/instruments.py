"""Observable OTel instruments that report :class:`~otel_diag.state.EventState` at collection.

Usage::

    cell = StateCell(state)
    register_instruments(meter_provider.get_meter("otel_diag"), cell)
    cell.state = other_state      # callbacks follow the cell, so re-instrumenting needs no new instruments

    observations(cell)            # {"trading.signals": [(3, {"trading.symbol": "BTCUSDT"}), ...], ...}

The hot path never touches an SDK instrument (a synchronous ``Counter.add`` costs several
times a wrapped call); every reader — the in-process ``DiagnosticsMetricReader``, OTLP,
a Prometheus scrape — sees the same numbers because they all observe the same state.

What an instrument reports is decided in one place, :data:`OBSERVERS` (through
:func:`observe`): the registered callbacks wrap its ``(value, attributes)`` pairs in
``Observation`` objects for the SDK, and :func:`observations` hands the very same pairs,
for every instrument at once, to a reader that derives from them without an SDK
collection (``DiagnosticsMetricReader.bind``).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from otel_diag import semconv as sc
from otel_diag._log import RateLimitedLog
from otel_diag.state import EventState

_log = RateLimitedLog(logging.getLogger("otel_diag"))

# One instrument's observations: (value, attributes) pairs, as a callback hands them to the SDK.
Points = List[Tuple[Any, Mapping[str, Any]]]
# Every instrument's observations, by metric name.
Observations = Dict[str, Points]

_EVENT_ATTRS = {event: {sc.ATTR_EVENT: event} for event in sc.EVENTS}
_NO_ATTRS: Mapping[str, Any] = {}

COUNTERS = (
    (sc.METRIC_SIGNALS, "Trading signals generated"),
    (sc.METRIC_ORDERS, "Orders handed to the router"),
    (sc.METRIC_VETOES, "Signals vetoed by a risk check, by reason and symbol"),
    (sc.METRIC_ROUTER_EVENTS, "Router events: route, twap_slice, fill, reject"),
    (sc.METRIC_EXIT_SCANS, "Exit scans run"),
    (sc.METRIC_EXIT_TRIGGERS, "TP/SL exit triggers fired"),
)

# Counts of current things: ObservableUpDownCounters (additive across series, may go down), as the metrics
# guide says for additive current values; the coverage ratio is a gauge (not additive).
EXIT_COUNTS = (
    (sc.METRIC_POSITIONS_OPEN, "Open positions in the ledger at the last exit scan", lambda g: g.open_positions),
    (sc.METRIC_TP_SL_REGISTERED, "Open positions with a TP/SL entry", lambda g: g.tp_sl_registered),
    (sc.METRIC_TP_SL_MISSING, "Open positions without a TP/SL entry", lambda g: g.tp_sl_missing),
    (sc.METRIC_TP_SL_ORPHANED, "TP/SL entries with no open position", lambda g: g.tp_sl_orphaned),
    (sc.METRIC_UNDERWATER_UNPROTECTED, "Underwater positions without TP/SL", lambda g: g.underwater_without_tp_sl),
)
EXIT_RATIOS = (
    (sc.METRIC_TP_SL_COVERAGE, "TP/SL coverage: registered / open (0 when nothing is open)", lambda g: g.coverage),
)
EXIT_GAUGES = EXIT_COUNTS + EXIT_RATIOS


class StateCell:
    """A mutable reference to the EventState that registered callbacks report."""

    __slots__ = ("state",)

    def __init__(self, state: Optional[EventState] = None) -> None:
        self.state = state


# -- what each instrument reports: (value, attributes) pairs read from the state ---------------
# Gauges never report a non-finite value: the SDK would drop it (with a warning) anyway, so leaving
# it out here keeps the SDK's points and the observations the same. Counters are ints by construction.
def _counter_observer(metric: str) -> Callable[[EventState], Points]:
    def observe_counter(state: EventState) -> Points:
        return state.counter_points(metric)

    return observe_counter


def _observe_last_events(state: EventState) -> Points:
    return [(ts, _EVENT_ATTRS.get(event) or {sc.ATTR_EVENT: event})
            for event, ts in state.last_event_times().items() if math.isfinite(ts)]


def _observe_market_data(state: EventState) -> Points:
    points: Points = []
    for symbol, times in state.market_data_times().items():
        for update, ts in zip(sc.MARKET_DATA_UPDATES, times):
            if math.isfinite(ts):
                points.append((ts, {sc.ATTR_SYMBOL: symbol, sc.ATTR_MARKET_DATA_UPDATE: update}))
    return points


def _exit_observer(read: Callable[[Any], Any]) -> Callable[[EventState], Points]:
    def observe_exit(state: EventState) -> Points:
        gauges = state.exit_gauges
        if gauges is None:
            return []
        value = read(gauges)
        return [(value, _NO_ATTRS)] if math.isfinite(value) else []

    return observe_exit


# metric name -> what its instrument observes, in registration order. The callbacks and
# observations() both look the observer up here at call time.
OBSERVERS: Dict[str, Callable[[EventState], Points]] = {
    **{name: _counter_observer(name) for name, _ in COUNTERS},
    sc.METRIC_LAST_EVENT_TIME: _observe_last_events,
    **{name: _exit_observer(read) for name, _, read in EXIT_GAUGES},
    sc.METRIC_MARKET_DATA_LAST_UPDATE: _observe_market_data,
}


def observe(metric: str, state: EventState) -> Points:
    """What ``metric``'s instrument reports for ``state``; nothing (logged) when reading it fails.

    The SDK would swallow a failing callback the same way ("Callback failed"), so an SDK
    collection and :func:`observations` agree even then.
    """
    try:
        return OBSERVERS[metric](state)
    except Exception:
        _log.exception("observe:" + metric, f"otel_diag: reading {metric} from the event state failed")
        return []


def observations(cell: StateCell) -> Observations:
    """Every instrument's observations of ``cell.state`` (``{}`` when the cell is unbound)."""
    state = cell.state
    if state is None:
        return {}
    return {metric: observe(metric, state) for metric in OBSERVERS}


def _callback(cell: StateCell, metric: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        state = cell.state
        if state is None:
            return ()
        return [Observation(value, attrs) for value, attrs in observe(metric, state)]

    return callback


def register_instruments(meter: Meter, cell: StateCell) -> List[object]:
    """Create every ``trading.*`` observable instrument on ``meter``, reporting ``cell.state``."""
    made: List[object] = []
    for name, description in COUNTERS:
        made.append(meter.create_observable_counter(
            name, callbacks=[_callback(cell, name)], unit=sc.METRIC_UNITS[name], description=description))
    made.append(meter.create_observable_gauge(
        sc.METRIC_LAST_EVENT_TIME, callbacks=[_callback(cell, sc.METRIC_LAST_EVENT_TIME)],
        unit=sc.METRIC_UNITS[sc.METRIC_LAST_EVENT_TIME],
        description="Time of the last event of each kind, Unix seconds from the engine's clock"))
    for name, description, _ in EXIT_COUNTS:
        made.append(meter.create_observable_up_down_counter(
            name, callbacks=[_callback(cell, name)], unit=sc.METRIC_UNITS[name], description=description))
    for name, description, _ in EXIT_RATIOS:
        made.append(meter.create_observable_gauge(
            name, callbacks=[_callback(cell, name)], unit=sc.METRIC_UNITS[name], description=description))
    made.append(meter.create_observable_gauge(
        sc.METRIC_MARKET_DATA_LAST_UPDATE, callbacks=[_callback(cell, sc.METRIC_MARKET_DATA_LAST_UPDATE)],
        unit=sc.METRIC_UNITS[sc.METRIC_MARKET_DATA_LAST_UPDATE],
        description="Per symbol, the time of its last bar (update=bar) and of its last price change "
                    "(update=price_change), Unix seconds from the engine's clock"))
    return made
