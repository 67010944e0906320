"""``DiagnosticsMetricReader``: an in-process MetricReader that derives the diagnostics from metric points.

Usage::

    reader = DiagnosticsMetricReader()
    provider = MeterProvider(metric_readers=[reader, exporting_reader])
    ...
    derived = reader.snapshot()          # collect now, then read what the points say
    derived.last_event_times["signal"]   # Unix seconds of the last signal
    derived.vetoes_by_reason()           # {"max_gross_exposure": 12, ...}

It registers beside the exporting reader, with cumulative temporality, so it sees
exactly the numbers OTLP and Prometheus see. Everything here comes from the points of
the ``trading.*`` instruments; the only side channel is ``extras`` (the trace ids of
the last events and the symbols of unprotected positions — unbounded values that do
not belong in metric attributes).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from opentelemetry.sdk.metrics import (
    Counter, Histogram, ObservableCounter, ObservableGauge, ObservableUpDownCounter, UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricReader, MetricsData

from otel_diag import semconv as sc

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
    """What one collection's points say."""

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


def derive(metrics_data: Optional[MetricsData], scope_name: str = sc.INSTRUMENTATION_NAME,
           extras: Optional[Mapping[str, Any]] = None) -> DerivedMetrics:
    """Read the ``trading.*`` points of ``scope_name`` out of one collection."""
    last: Dict[str, float] = {}
    signals: Dict[str, int] = {}
    orders: Dict[str, int] = {}
    vetoes: Dict[Tuple[str, str], int] = {}
    router: Dict[str, int] = {}
    scans = triggers = 0
    exit_values: Dict[str, Any] = {}
    overflow: Dict[str, bool] = {}
    for rm in (metrics_data.resource_metrics if metrics_data is not None else ()):
        for sm in rm.scope_metrics:
            if sm.scope.name != scope_name:
                continue
            for metric in sm.metrics:
                name = metric.name
                for point in metric.data.data_points:
                    attrs = point.attributes or {}
                    value = point.value
                    if attrs.get(sc.ATTR_OVERFLOW):
                        overflow[name] = True
                    if name == sc.METRIC_LAST_EVENT_TIME:
                        event = attrs.get(sc.ATTR_EVENT)
                        if event is not None:
                            last[str(event)] = float(value)
                    elif name == sc.METRIC_SIGNALS:
                        _add(signals, str(attrs.get(sc.ATTR_SYMBOL, OTHER)), value)
                    elif name == sc.METRIC_ORDERS:
                        _add(orders, str(attrs.get(sc.ATTR_SYMBOL, OTHER)), value)
                    elif name == sc.METRIC_VETOES:
                        key = (str(attrs.get(sc.ATTR_VETO_REASON, OTHER)), str(attrs.get(sc.ATTR_SYMBOL, OTHER)))
                        _add(vetoes, key, value)
                    elif name == sc.METRIC_ROUTER_EVENTS:
                        _add(router, str(attrs.get(sc.ATTR_ROUTER_EVENT, OTHER)), value)
                    elif name == sc.METRIC_EXIT_SCANS:
                        scans += int(value)
                    elif name == sc.METRIC_EXIT_TRIGGERS:
                        triggers += int(value)
                    elif name in _EXIT_FIELDS:
                        exit_values[_EXIT_FIELDS[name]] = value
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
    return DerivedMetrics(True, last, signals, orders, vetoes, router, scans, triggers, exit_points, overflow,
                          dict(extras or {}))


def _add(d: Dict[Any, int], key: Any, value: Any) -> None:
    d[key] = d.get(key, 0) + int(value)


class DiagnosticsMetricReader(MetricReader):
    """Collects on demand (``snapshot()``) and keeps what the last collection's points say."""

    def __init__(self, scope_name: str = sc.INSTRUMENTATION_NAME,
                 extras: Optional[Callable[[], Mapping[str, Any]]] = None) -> None:
        super().__init__(preferred_temporality=_CUMULATIVE)
        self.scope_name = scope_name
        self.extras = extras
        self._lock = threading.Lock()
        self._latest = DerivedMetrics()
        self._shutdown = False
        self._received = False

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        extras = self.extras() if self.extras is not None else None
        derived = derive(metrics_data, self.scope_name, extras)
        self._received = True
        with self._lock:
            self._latest = derived

    def snapshot(self, timeout_millis: float = 10_000) -> DerivedMetrics:
        """Collect now and return the derived view (the last good one if collection is impossible)."""
        if not self._shutdown:
            self._received = False
            self.collect(timeout_millis=timeout_millis)
            if not self._received and self._collect is not None:  # the SDK skips the hook when no point exists
                empty = derive(None, self.scope_name, self.extras() if self.extras is not None else None)
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
