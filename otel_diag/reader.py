"""``DiagnosticsMetricReader``: an in-process MetricReader that derives the diagnostics from what the
``trading.*`` instruments report.

Usage::

    reader = DiagnosticsMetricReader()
    provider = MeterProvider(metric_readers=[reader, exporting_reader])
    reader.bind(cell)                    # the StateCell the provider's instruments observe (configure() does it)
    ...
    derived = reader.snapshot()          # what the instruments report now
    derived.last_event_times["signal"]   # Unix seconds of the last signal
    derived.vetoes_by_reason()           # {"max_gross_exposure": 12, ...}

    derive(metrics_data)                 # the same view out of an SDK collection's points
    derive_observations(observations(cell))   # ... out of the instruments' observations

It registers beside the exporting reader, with cumulative temporality. Everything here
comes from what the ``trading.*`` instruments report; the only side channel is ``extras``
(the trace ids of the last events and the symbols of unprotected positions — unbounded
values that do not belong in metric attributes). Two ways in, one derivation:

* bound to the instruments' :class:`~otel_diag.instruments.StateCell`, ``snapshot()`` derives
  from their observations — exactly the ``(value, attributes)`` pairs the registered callbacks
  hand the SDK (:func:`otel_diag.instruments.observations`) — without an SDK collection, which
  costs ≈ 10 µs a series (measurement objects, attribute cleaning and hashing, aggregation).
  For these instruments the SDK's cumulative point *is* the observation: an observable
  counter's point is the value observed for its attribute set, a gauge's the last one. The
  SDK's cardinality limit is applied the way the SDK applies it (attribute sets beyond the
  first ``limit`` of a metric fold into one ``otel.metric.overflow`` set), so the view equals
  ``derive()`` of a collection by any cumulative reader of that provider with the same limit (the SDK's
  default, 2,000) — provided the reader has seen only the current state: an SDK reader keeps
  counting the attribute sets of an earlier state towards its limit after a re-bind or an
  ``EventState.reset()``, so beyond the limit it may fold sooner than the observations do.
* unbound (or for points collected some other way), ``snapshot()`` collects through the SDK
  and ``derive()`` reads the points; ``collect()`` always does, and updates ``latest``.

Both feed the same per-point accumulator, so they cannot read a point differently.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple

from opentelemetry.sdk.metrics import (
    Counter, Histogram, ObservableCounter, ObservableGauge, ObservableUpDownCounter, UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricReader, MetricsData

from otel_diag import semconv as sc
from otel_diag._internals import SDK_CARDINALITY_LIMIT
from otel_diag.instruments import Observations, Points, StateCell, observations

_CUMULATIVE = {kind: AggregationTemporality.CUMULATIVE for kind in (
    Counter, UpDownCounter, Histogram, ObservableCounter, ObservableUpDownCounter, ObservableGauge)}

_EXIT_FIELDS = {
    sc.METRIC_POSITIONS_OPEN: "open_positions",
    sc.METRIC_TP_SL_REGISTERED: "tp_sl_registered",
    sc.METRIC_TP_SL_MISSING: "tp_sl_missing",
    sc.METRIC_TP_SL_ORPHANED: "tp_sl_orphaned",
    sc.METRIC_UNDERWATER_UNPROTECTED: "underwater_without_tp_sl",
    sc.METRIC_TP_SL_COVERAGE: "coverage",
}


@dataclass(frozen=True)
class ExitPipelinePoints:
    """The exit-pipeline gauges; ``known`` is False until something reported them."""

    known: bool = False
    open_positions: int = 0
    tp_sl_registered: int = 0
    tp_sl_missing: int = 0
    tp_sl_orphaned: int = 0
    underwater_without_tp_sl: int = 0
    coverage: float = 0.0


@dataclass(frozen=True)
class DerivedMetrics:
    """What the instruments report at one moment (one collection's points, or the same observations)."""

    collected: bool = False
    last_event_times: Mapping[str, float] = field(default_factory=dict)
    signals_by_symbol: Mapping[str, int] = field(default_factory=dict)
    orders_by_symbol: Mapping[str, int] = field(default_factory=dict)
    vetoes: Mapping[Tuple[str, str], int] = field(default_factory=dict)  # (reason, symbol) -> count
    router_events: Mapping[str, int] = field(default_factory=dict)
    exit_scans: int = 0
    exit_triggers: int = 0
    exit: ExitPipelinePoints = field(default_factory=ExitPipelinePoints)
    overflow: Mapping[str, bool] = field(default_factory=dict)  # metric -> a cardinality cap folded series
    extras: Mapping[str, Any] = field(default_factory=dict)
    # symbol -> {market-data update kind (semconv.MARKET_DATA_UPDATES) -> Unix seconds of the last one}
    market_data: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    @property
    def total_signals(self) -> int:
        return sum(self.signals_by_symbol.values())

    @property
    def total_orders(self) -> int:
        return sum(self.orders_by_symbol.values())

    @property
    def total_vetoes(self) -> int:
        return sum(self.vetoes.values())

    def vetoes_by_reason(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for (reason, _), n in self.vetoes.items():
            out[reason] = out.get(reason, 0) + n
        return out

    def vetoes_by_symbol(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for (_, symbol), n in self.vetoes.items():
            out[symbol] = out.get(symbol, 0) + n
        return out

    def vetoes_by_reason_symbol(self) -> Dict[str, Dict[str, int]]:
        out: Dict[str, Dict[str, int]] = {}
        for (reason, symbol), n in self.vetoes.items():
            out.setdefault(reason, {})[symbol] = n
        return out


OTHER = "_other"  # the name a folded-over (overflow) series is shown under

_EMPTY: Mapping[str, Any] = {}
_ATTR_OVERFLOW, _ATTR_SYMBOL, _ATTR_VETO_REASON, _METRIC_VETOES = (
    sc.ATTR_OVERFLOW, sc.ATTR_SYMBOL, sc.ATTR_VETO_REASON, sc.METRIC_VETOES)
_OVERFLOW_ATTRS: Mapping[str, Any] = {sc.ATTR_OVERFLOW: True}
# Last-value gauges: a folded-over set keeps the last value observed, not the sum.
_LAST_VALUE = frozenset({sc.METRIC_LAST_EVENT_TIME, sc.METRIC_MARKET_DATA_LAST_UPDATE, *_EXIT_FIELDS})


class _Accumulator:
    """Reads (metric name, value, attributes) triples — a metric's points at a time — into a DerivedMetrics.

    The one place a point is interpreted: :func:`derive` feeds it an SDK collection's points,
    :func:`derive_observations` the instruments' observations. Counter values are summed per key
    (so two points that map to the same key add up, as the SDK adds two observations of one
    attribute set); gauges keep the last value.
    """

    def __init__(self) -> None:
        self.last: Dict[str, float] = {}
        self.signals: Dict[str, int] = {}
        self.orders: Dict[str, int] = {}
        self.vetoes: Dict[Tuple[str, str], int] = {}
        self.router: Dict[str, int] = {}
        self.scans = 0
        self.triggers = 0
        self.exit_values: Dict[str, Any] = {}
        self.overflow: Dict[str, bool] = {}
        self.market: Dict[str, Dict[str, float]] = {}

    def add(self, name: str, points: Iterable[Tuple[Any, Mapping[str, Any]]]) -> None:
        """Read ``points``, the ``(value, attributes)`` pairs of metric ``name``."""
        overflowed = False
        flag = _ATTR_OVERFLOW  # locals: this runs once per series, thousands of times a snapshot
        if name == _METRIC_VETOES:
            vetoes = self.vetoes
            reason_attr, symbol_attr = _ATTR_VETO_REASON, _ATTR_SYMBOL
            for value, attrs in points:
                key = (str(attrs.get(reason_attr, OTHER)), str(attrs.get(symbol_attr, OTHER)))
                vetoes[key] = vetoes.get(key, 0) + int(value)
                if attrs.get(flag):
                    overflowed = True
        elif name in _BY_ONE:
            field_name, attr = _BY_ONE[name]
            counts = getattr(self, field_name)
            for value, attrs in points:
                key = str(attrs.get(attr, OTHER))
                counts[key] = counts.get(key, 0) + int(value)
                if attrs.get(flag):
                    overflowed = True
        elif name == sc.METRIC_LAST_EVENT_TIME:
            last = self.last
            for value, attrs in points:
                event = attrs.get(sc.ATTR_EVENT)
                if event is not None:
                    last[str(event)] = float(value)
                if attrs.get(flag):
                    overflowed = True
        elif name == sc.METRIC_MARKET_DATA_LAST_UPDATE:
            market = self.market
            for value, attrs in points:
                symbol, update = attrs.get(_ATTR_SYMBOL), attrs.get(sc.ATTR_MARKET_DATA_UPDATE)
                if symbol is not None and update is not None:
                    market.setdefault(str(symbol), {})[str(update)] = float(value)
                if attrs.get(flag):
                    overflowed = True
        elif name == sc.METRIC_EXIT_SCANS or name == sc.METRIC_EXIT_TRIGGERS:
            total = 0
            for value, attrs in points:
                total += int(value)
                if attrs.get(flag):
                    overflowed = True
            if name == sc.METRIC_EXIT_SCANS:
                self.scans += total
            else:
                self.triggers += total
        else:
            field_name = _EXIT_FIELDS.get(name)
            for value, attrs in points:
                if field_name is not None:
                    self.exit_values[field_name] = value
                if attrs.get(flag):
                    overflowed = True
        if overflowed:
            self.overflow[name] = True

    def result(self, extras: Optional[Mapping[str, Any]]) -> DerivedMetrics:
        exit_values = self.exit_values
        exit_points = ExitPipelinePoints()
        if "open_positions" in exit_values:
            exit_points = ExitPipelinePoints(
                known=True,
                open_positions=int(exit_values.get("open_positions", 0)),
                tp_sl_registered=int(exit_values.get("tp_sl_registered", 0)),
                tp_sl_missing=int(exit_values.get("tp_sl_missing", 0)),
                tp_sl_orphaned=int(exit_values.get("tp_sl_orphaned", 0)),
                underwater_without_tp_sl=int(exit_values.get("underwater_without_tp_sl", 0)),
                coverage=float(exit_values.get("coverage", 0.0)),
            )
        return DerivedMetrics(True, self.last, self.signals, self.orders, self.vetoes, self.router, self.scans,
                              self.triggers, exit_points, self.overflow, dict(extras or {}), self.market)


# counters keyed by one attribute: metric -> (accumulator field, attribute)
_BY_ONE = {
    sc.METRIC_SIGNALS: ("signals", sc.ATTR_SYMBOL),
    sc.METRIC_ORDERS: ("orders", sc.ATTR_SYMBOL),
    sc.METRIC_ROUTER_EVENTS: ("router", sc.ATTR_ROUTER_EVENT),
}


def derive(metrics_data: Optional[MetricsData], scope_name: str = sc.INSTRUMENTATION_NAME,
           extras: Optional[Mapping[str, Any]] = None) -> DerivedMetrics:
    """Read the ``trading.*`` points of ``scope_name`` out of one SDK collection."""
    acc = _Accumulator()
    for rm in (metrics_data.resource_metrics if metrics_data is not None else ()):
        for sm in rm.scope_metrics:
            if sm.scope.name != scope_name:
                continue
            for metric in sm.metrics:
                acc.add(metric.name, [(p.value, p.attributes or _EMPTY) for p in metric.data.data_points])
    return acc.result(extras)


def derive_observations(observed: Observations, extras: Optional[Mapping[str, Any]] = None,
                        cardinality_limit: int = SDK_CARDINALITY_LIMIT) -> DerivedMetrics:
    """The view :func:`derive` gives of an SDK collection, read from the instruments' observations.

    ``observed`` is :func:`otel_diag.instruments.observations`' ``{metric: [(value, attributes), ...]}``.
    A metric with more than ``cardinality_limit`` attribute sets keeps the first ``cardinality_limit``
    and folds the rest into one ``otel.metric.overflow`` set (summed; a gauge keeps the last value),
    as an SDK reader with that limit does.
    """
    acc = _Accumulator()
    for name, points in observed.items():
        if len(points) > cardinality_limit:
            points = _fold(name, points, cardinality_limit)
        acc.add(name, points)
    return acc.result(extras)


def _fold(name: str, points: Points, limit: int) -> Points:
    """``points`` as an SDK reader limited to ``limit`` attribute sets per metric records them."""
    rest = points[limit:]
    value = rest[-1][0] if name in _LAST_VALUE else sum(v for v, _ in rest)
    return [*points[:limit], (value, _OVERFLOW_ATTRS)]


class DiagnosticsMetricReader(MetricReader):
    """Derives on demand (``snapshot()``) and keeps the last derived view (``latest``).

    Bound (:meth:`bind`) to the StateCell its provider's instruments observe, a snapshot reads
    their observations; unbound, it collects through the SDK. ``collect()`` (the SDK's) always
    derives from the collected points.
    """

    def __init__(self, scope_name: str = sc.INSTRUMENTATION_NAME,
                 extras: Optional[Callable[[], Mapping[str, Any]]] = None) -> None:
        super().__init__(preferred_temporality=_CUMULATIVE)
        self.scope_name = scope_name
        self.extras = extras
        self.cardinality_limit = SDK_CARDINALITY_LIMIT  # what the SDK applies for this reader (no limits given)
        self._lock = threading.Lock()
        self._latest = DerivedMetrics()
        self._shutdown = False
        self._received = False
        self._cell: Optional[StateCell] = None

    def bind(self, cell: Optional[StateCell]) -> None:
        """Derive snapshots from the observations of the instruments that report ``cell.state``.

        ``cell`` must be the cell whose instruments are registered, under this reader's scope, on
        the MeterProvider this reader is registered with (``otel_diag.instrumentor.cell_for``):
        the snapshot then equals a derive of this reader's own collection (see the module
        docstring for the one caveat beyond the cardinality limit). The cell, not a state, is
        bound: re-instrumenting points the cell at another state and snapshots follow; an
        unbound cell (``cell.state is None``) gives the empty view. ``None`` goes back to
        collecting through the SDK.
        """
        self._cell = cell

    @property
    def bound(self) -> Optional[StateCell]:
        return self._cell

    def _extras_now(self) -> Optional[Mapping[str, Any]]:
        return self.extras() if self.extras is not None else None

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        derived = derive(metrics_data, self.scope_name, self._extras_now())
        self._received = True
        with self._lock:
            self._latest = derived

    def snapshot(self, timeout_millis: float = 10_000) -> DerivedMetrics:
        """The derived view now (the last good one after shutdown, or if collection is impossible)."""
        if not self._shutdown:
            cell = self._cell
            if cell is not None:
                observed = observations(cell)
                derived = derive_observations(observed, self._extras_now(), self.cardinality_limit)
                with self._lock:
                    self._latest = derived
            else:
                self._received = False
                self.collect(timeout_millis=timeout_millis)
                if not self._received and self._collect is not None:  # the SDK skips the hook when no point exists
                    empty = derive(None, self.scope_name, self._extras_now())
                    with self._lock:
                        self._latest = empty
        with self._lock:
            return self._latest

    @property
    def latest(self) -> DerivedMetrics:
        with self._lock:
            return self._latest

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._shutdown = True
