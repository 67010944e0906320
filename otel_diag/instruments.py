"""Observable OTel instruments that report :class:`~otel_diag.state.EventState` at collection.

Usage::

    cell = StateCell(state)
    register_instruments(meter_provider.get_meter("otel_diag"), cell)
    cell.state = other_state      # callbacks follow the cell, so re-instrumenting needs no new instruments

The hot path never touches an SDK instrument (a synchronous ``Counter.add`` costs several
times a wrapped call); every reader — the in-process ``DiagnosticsMetricReader``, OTLP,
a Prometheus scrape — sees the same numbers because they all observe the same state.
"""
from __future__ import annotations

from typing import Callable, Iterable, List, Optional

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from otel_diag import semconv as sc
from otel_diag.state import EventState

_EVENT_ATTRS = {event: {sc.ATTR_EVENT: event} for event in sc.EVENTS}

COUNTERS = (
    (sc.METRIC_SIGNALS, "Trading signals generated"),
    (sc.METRIC_ORDERS, "Orders handed to the router"),
    (sc.METRIC_VETOES, "Signals vetoed by a risk check, by reason and symbol"),
    (sc.METRIC_ROUTER_EVENTS, "Router events: route, twap_slice, fill, reject"),
    (sc.METRIC_EXIT_SCANS, "Exit scans run"),
    (sc.METRIC_EXIT_TRIGGERS, "TP/SL exit triggers fired"),
)


class StateCell:
    """A mutable reference to the EventState that registered callbacks report."""

    __slots__ = ("state",)

    def __init__(self, state: Optional[EventState] = None) -> None:
        self.state = state


def _counter_callback(cell: StateCell, metric: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        state = cell.state
        if state is None:
            return ()
        return [Observation(value, attrs) for value, attrs in state.counter_points(metric)]

    return observe


def _last_event_callback(cell: StateCell) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        state = cell.state
        if state is None:
            return ()
        return [Observation(ts, _EVENT_ATTRS.get(event) or {sc.ATTR_EVENT: event})
                for event, ts in state.last_event_times().items()]

    return observe


def _exit_callback(cell: StateCell, read: Callable) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        state = cell.state
        gauges = state.exit_gauges if state is not None else None
        if gauges is None:
            return ()
        return (Observation(read(gauges)),)

    return observe


EXIT_GAUGES = (
    (sc.METRIC_POSITIONS_OPEN, "Open positions in the ledger at the last exit scan", lambda g: g.open_positions),
    (sc.METRIC_TP_SL_REGISTERED, "Open positions with a TP/SL entry", lambda g: g.tp_sl_registered),
    (sc.METRIC_TP_SL_MISSING, "Open positions without a TP/SL entry", lambda g: g.tp_sl_missing),
    (sc.METRIC_TP_SL_ORPHANED, "TP/SL entries with no open position", lambda g: g.tp_sl_orphaned),
    (sc.METRIC_UNDERWATER_UNPROTECTED, "Underwater positions without TP/SL", lambda g: g.underwater_without_tp_sl),
    (sc.METRIC_TP_SL_COVERAGE, "TP/SL coverage: registered / open (0 when nothing is open)", lambda g: g.coverage),
)


def register_instruments(meter: Meter, cell: StateCell) -> List[object]:
    """Create every ``trading.*`` observable instrument on ``meter``, reporting ``cell.state``."""
    made: List[object] = []
    for name, description in COUNTERS:
        made.append(meter.create_observable_counter(
            name, callbacks=[_counter_callback(cell, name)], unit=sc.METRIC_UNITS[name], description=description))
    made.append(meter.create_observable_gauge(
        sc.METRIC_LAST_EVENT_TIME, callbacks=[_last_event_callback(cell)], unit=sc.METRIC_UNITS[sc.METRIC_LAST_EVENT_TIME],
        description="Time of the last event of each kind, Unix seconds from the engine's clock"))
    for name, description, read in EXIT_GAUGES:
        made.append(meter.create_observable_gauge(
            name, callbacks=[_exit_callback(cell, read)], unit=sc.METRIC_UNITS[name], description=description))
    return made
