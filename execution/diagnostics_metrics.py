"""The spec's diagnostics API (PATCHSET v7.6_S2), read through otel_diag's metric reader.

Usage::

    from execution.diagnostics_metrics import build_runtime_diagnostics_snapshot, compute_liveness_alerts

    alerts = compute_liveness_alerts(cfg.diagnostics.liveness)                  # recorded events, engine clock
    alerts = compute_liveness_alerts(cfg_liveness, now=now, timestamps={"signals": None})
    snap = build_runtime_diagnostics_snapshot(cfg.diagnostics.liveness)

There is no second set of hand-kept globals: counts and last-event times come from what the
``trading.*`` instruments report, as :class:`otel_diag.DiagnosticsMetricReader` derives it —
from the very observations their callbacks hand the SDK, so the same figures OTLP and
Prometheus receive. ``record_router_event`` and
``update_exit_pipeline_status`` write the same in-process state the wrappers write.

Liveness semantics (DESIGN.md): disabled → no flag; threshold None or <= 0 → key not
checked; missing or unparseable timestamp → ``missing[key]``, idle, ``details[key] >=
threshold``; future timestamp → no flag, duration 0; otherwise idle iff the seconds since
the event exceed the threshold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

import otel_diag
from execution.config import LivenessConfig
from execution.diagnostics_document import (
    LIVENESS_CHECKS,
    LIVENESS_KEYS,
    SYMBOL_CHECKS,
    ExitPipelineStatus,
    LivenessAlerts,
    VetoCounters,
    parse_timestamp,
    to_iso,
)
from otel_diag import semconv as sc
from otel_diag.reader import DerivedMetrics
from otel_diag.state import ExitGauges

__all__ = [
    "VetoCounters", "ExitPipelineStatus", "LivenessAlerts", "LivenessConfig", "RuntimeDiagnosticsSnapshot",
    "LIVENESS_KEYS", "now_iso", "record_router_event", "update_exit_pipeline_status", "compute_liveness_alerts",
    "build_runtime_diagnostics_snapshot", "parse_timestamp", "to_iso",
]


@dataclass
class RuntimeDiagnosticsSnapshot:
    veto_counters: VetoCounters
    exit_pipeline_status: ExitPipelineStatus
    liveness_alerts: LivenessAlerts


def current_telemetry() -> otel_diag.Telemetry:
    """The telemetry the executor configured. The spec's functions may be called with none configured
    (a test, a script): then they set up an in-process one here (no exporters, engine not patched)."""
    current = otel_diag.current()
    return current if current is not None else otel_diag.configure(instrument=False, tracing=False, env={})


# -- time ---------------------------------------------------------------------------------
def now_iso() -> str:
    """The engine clock's time (the one the events are stamped with) as ISO-8601 UTC."""
    return to_iso(current_telemetry().clock())


def _threshold(value: Any) -> Optional[float]:
    """A usable threshold in seconds, or None when the key is not to be checked."""
    if value is None or isinstance(value, bool):
        return None
    try:
        t = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond float, e.g. 10**400
        return None
    if not math.isfinite(t) or t <= 0:
        return None
    return t


def _now(now: Any, telemetry: Optional[otel_diag.Telemetry] = None) -> datetime:
    parsed = parse_timestamp(now) if now is not None else None
    if parsed is None:
        parsed = parse_timestamp((telemetry or current_telemetry()).clock())
    if parsed is None:  # an engine clock that gives no time on the calendar (NaN, year 10000): wall time
        parsed = datetime.now(timezone.utc)
    return parsed


# -- recording (the same state the wrappers write) ---------------------------------------
def record_router_event(event: str = sc.ROUTER_ROUTE) -> None:
    """Count a router event of kind ``event`` and stamp the router's last-event time."""
    t = current_telemetry()
    t.state.hit(t.state.series(sc.METRIC_ROUTER_EVENTS, {sc.ATTR_ROUTER_EVENT: event}), sc.EVENT_ROUTER)


_EXIT_UPDATE_FIELDS = {"open_positions_count", "tp_sl_registered_count", "tp_sl_missing_count",
                "underwater_without_tp_sl_count", "tp_sl_coverage_pct", "ledger_registry_mismatch",
                "tp_sl_orphan_count", "missing_tp_sl_keys", "underwater_without_tp_sl_keys"}


def update_exit_pipeline_status(**fields: Any) -> None:
    """Set the exit pipeline gauges (spec §3.2's fields; unknown fields raise TypeError).

    Coverage is registered / open when not given; the mismatch flag is always
    ``tp_sl_missing_count > 0`` — the one definition the exported metrics carry too.
    """
    unknown = set(fields) - _EXIT_UPDATE_FIELDS
    if unknown:
        raise TypeError(f"update_exit_pipeline_status: unknown field(s) {', '.join(sorted(unknown))}")
    t = current_telemetry()
    prev = t.state.exit_gauges or ExitGauges()
    open_n = int(fields.get("open_positions_count", prev.open_positions))
    registered = int(fields.get("tp_sl_registered_count", prev.tp_sl_registered))
    missing_keys, missing_n = _keys_and_count(fields, "missing_tp_sl_keys", "tp_sl_missing_count",
                                              prev.missing, prev.missing_count)
    under_keys, under_n = _keys_and_count(fields, "underwater_without_tp_sl_keys", "underwater_without_tp_sl_count",
                                          prev.underwater_unprotected, prev.underwater_count)
    coverage = fields.get("tp_sl_coverage_pct")
    if coverage is None:
        coverage = registered / open_n if open_n > 0 else 0.0
    t.state.set_exit_gauges(ExitGauges(
        open_positions=open_n, tp_sl_registered=registered,
        tp_sl_orphaned=int(fields.get("tp_sl_orphan_count", prev.tp_sl_orphaned)),
        coverage=float(coverage), missing=missing_keys, underwater_unprotected=under_keys,
        missing_count=missing_n, underwater_count=under_n,
    ))


def _keys_and_count(fields: Mapping[str, Any], keys_field: str, count_field: str,
                    prev_keys: tuple, prev_count: Optional[int]) -> Tuple[tuple, Optional[int]]:
    """(keys, explicit count) of one exit list: a given count wins; given keys alone mean "count the keys"."""
    keys = tuple(tuple(k) for k in fields.get(keys_field, prev_keys))
    if fields.get(count_field) is not None:
        return keys, int(fields[count_field])
    return keys, None if keys_field in fields else prev_count


# -- evaluation ------------------------------------------------------------------------------
def _recorded_timestamps(derived: DerivedMetrics) -> Dict[str, Optional[float]]:
    last = derived.last_event_times
    return {key: last.get(sc.LIVENESS_EVENTS[key]) for key in LIVENESS_KEYS}


def evaluate_liveness(cfg_liveness: Any, now: datetime, timestamps: Mapping[str, Any],
                      trace_ids: Optional[Mapping[str, str]] = None,
                      market_data: Optional[Mapping[str, Mapping[str, float]]] = None,
                      symbols: Iterable[str] = ()) -> LivenessAlerts:
    """The pure core of :func:`compute_liveness_alerts`: ``now`` and the timestamps are given.

    ``market_data`` maps a symbol to its last-update times (``DerivedMetrics.market_data``); ``symbols`` is the
    configured universe: each of them, and each symbol with market data, is checked per symbol.
    """
    alerts = LivenessAlerts(evaluated_at=now.isoformat(timespec="microseconds"))
    if not getattr(cfg_liveness, "enabled", False):
        alerts.enabled = False
        return alerts
    evaluate_symbols(alerts, cfg_liveness, now, market_data or {}, symbols)
    for check in LIVENESS_CHECKS:
        key, flag = check.key, check.idle_flag
        threshold = _threshold(getattr(cfg_liveness, check.threshold_field, None))
        if threshold is None:
            continue
        alerts.thresholds[key] = threshold
        raw = timestamps.get(key)
        ts = parse_timestamp(raw)
        alerts.last_event_ts[key] = ts.isoformat(timespec="microseconds") if ts is not None else None
        alerts.last_trace_ids[key] = (trace_ids or {}).get(sc.LIVENESS_EVENTS[key]) if ts is not None else None
        if ts is None:
            alerts.missing[key] = True
            alerts.details[key] = threshold + 1.0
            setattr(alerts, flag, True)
            continue
        alerts.missing[key] = False
        age = (now - ts).total_seconds()
        if not age > 0:  # the future (clock skew) or now: no flag, never a negative duration
            alerts.details[key] = 0.0
            continue
        alerts.details[key] = age
        if age > threshold:
            setattr(alerts, flag, True)
    return alerts


def evaluate_symbols(alerts: LivenessAlerts, cfg_liveness: Any, now: datetime,
                     market_data: Mapping[str, Mapping[str, float]], symbols: Iterable[str]) -> None:
    """Fill the per-symbol fields of ``alerts``: each symbol's age per check, and the stale ones.

    The liveness semantics, per symbol and check: a check without a usable threshold is not run; a symbol whose
    update was never stamped is missing (age ``threshold + 1``, stale); a time in the future is age 0; otherwise
    stale iff the age exceeds the threshold. A stale symbol is reported with its first failed check, in
    SYMBOL_CHECKS order (no bars before a frozen price).
    """
    checks = []
    for check in SYMBOL_CHECKS:
        threshold = _threshold(getattr(cfg_liveness, check.threshold_field, None))
        if threshold is not None:
            alerts.symbol_thresholds[check.key] = threshold
            checks.append((check.key, sc.SYMBOL_CHECK_UPDATES[check.key], threshold))
    if not checks:
        return
    moment = now.timestamp()
    for symbol in sorted({*symbols, *market_data}):
        times = market_data.get(symbol, {})
        if sc.MARKET_DATA_BAR not in times:
            alerts.missing_symbols.append(symbol)
        ages: Dict[str, float] = {}
        for key, update, threshold in checks:
            ts = times.get(update)
            age = threshold + 1.0 if ts is None else max(0.0, moment - ts)
            ages[key] = age
            if age > threshold and symbol not in alerts.symbol_checks:
                alerts.symbol_checks[symbol] = key
        alerts.symbol_details[symbol] = ages
    alerts.stale_symbols = sorted(alerts.symbol_checks)


def compute_liveness_alerts(cfg_liveness: Any, *, now: Optional[datetime] = None,
                            timestamps: Optional[Mapping[str, Any]] = None) -> LivenessAlerts:
    """Liveness flags, durations and missing keys, with the exact semantics above.

    ``timestamps`` maps ``signals|orders|exits|router|exit_scans`` to an ISO string, datetime,
    Unix number or None and replaces the recorded ones (keys absent from it count as missing);
    ``now`` defaults to the engine clock.
    """
    if timestamps is None:
        derived = current_telemetry().snapshot()
        return evaluate_liveness(cfg_liveness, _now(now), _recorded_timestamps(derived),
                                 derived.extras.get("last_trace_ids"), derived.market_data)
    return evaluate_liveness(cfg_liveness, _now(now), timestamps)


def veto_counters(derived: DerivedMetrics) -> VetoCounters:
    last = derived.last_event_times
    return VetoCounters(
        by_reason=derived.vetoes_by_reason(),
        total_signals=derived.total_signals,
        total_orders=derived.total_orders,
        total_vetoes=derived.total_vetoes,
        last_signal_ts=to_iso(last.get(sc.EVENT_SIGNAL)),
        last_order_ts=to_iso(last.get(sc.EVENT_ORDER)),
        last_veto_ts=to_iso(last.get(sc.EVENT_VETO)),
        by_symbol=derived.vetoes_by_symbol(),
        by_reason_symbol=derived.vetoes_by_reason_symbol(),
        router_events=dict(derived.router_events),
        overflow=bool(derived.overflow) or any(derived.extras.get("series_overflow", {}).values()),
    )


def exit_pipeline_status(derived: DerivedMetrics) -> ExitPipelineStatus:
    last = derived.last_event_times
    ex = derived.exit
    missing_keys = derived.extras.get("missing_keys", [])
    under_keys = derived.extras.get("underwater_keys", [])
    return ExitPipelineStatus(
        last_exit_scan_ts=to_iso(last.get(sc.EVENT_EXIT_SCAN)),
        last_exit_trigger_ts=to_iso(last.get(sc.EVENT_EXIT_TRIGGER)),
        open_positions_count=ex.open_positions,
        tp_sl_registered_count=ex.tp_sl_registered,
        tp_sl_missing_count=ex.tp_sl_missing,
        underwater_without_tp_sl_count=ex.underwater_without_tp_sl,
        last_router_event_ts=to_iso(last.get(sc.EVENT_ROUTER)),
        tp_sl_coverage_pct=ex.coverage,
        ledger_registry_mismatch=ex.tp_sl_missing > 0,
        tp_sl_orphan_count=ex.tp_sl_orphaned,
        underwater_without_tp_sl_symbols=sorted({k[0] for k in under_keys}),
        missing_tp_sl_symbols=sorted({k[0] for k in missing_keys}),
        total_exit_scans=derived.exit_scans,
        total_exit_triggers=derived.exit_triggers,
    )


def build_runtime_diagnostics_snapshot(cfg_liveness: Any, *, now: Optional[datetime] = None,
                                       telemetry: Optional[otel_diag.Telemetry] = None,
                                       symbols: Iterable[str] = ()) -> RuntimeDiagnosticsSnapshot:
    """Veto counters, exit pipeline and liveness from one snapshot of what the ``trading.*`` instruments report
    (``telemetry``'s, by default the configured one's); ``symbols``, the configured universe, are each checked
    for fresh market data (a symbol never stamped is missing)."""
    telemetry = telemetry or current_telemetry()
    derived = telemetry.snapshot()
    alerts = evaluate_liveness(cfg_liveness, _now(now, telemetry), _recorded_timestamps(derived),
                               derived.extras.get("last_trace_ids"), derived.market_data, symbols)
    return RuntimeDiagnosticsSnapshot(veto_counters(derived), exit_pipeline_status(derived), alerts)
