"""Benchmark 5: otel_diag against what a user would otherwise write, per vetoed risk check.

Usage::

    rows = run_alternatives(loops=2_000, rounds=31)

Every variant records the same two events of one vetoed risk check — the signal on ``BTCUSDT``
and its ``per_symbol_cap`` veto: each a count and a last-event time, as otel_diag records them —
timed in the same rounds against the bare call:

- the spec's naive approach: module-level dataclasses, a ``record_veto`` helper stamping
  ``datetime.now(timezone.utc).isoformat()`` (PATCHSET v7.6 §1–2), written into the engine's code;
- prometheus_client: ``Counter.labels(reason, symbol).inc()`` plus ``Gauge.labels(event).set(now)``,
  labels bound on every call, and bound once (children kept) — the reference every row is a ratio to;
- the OpenTelemetry SDK's synchronous instruments: ``Counter.add`` + ``Gauge.set`` with prebuilt attributes;
- otel_diag, metrics only: the engine untouched, ``RiskEngine.check`` patched as the instrumentor does
  (``otel_diag.wrappers.patch_function``: a function Python binds like the original);

``prometheus_hosts()`` also serves bench_calls, whose metrics-only budget is a ratio to the
bound prometheus_client host recording the same events.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Dict, List, Optional

from otel_diag import semconv as sc
from otel_diag.default_targets import TARGETS
from otel_diag.wrappers import ACTIVE, make_wrapper
from tests.benchmarks.fixtures import APPROVED, ROUTE, SIGNAL, VETO, StubHost, quiet_otel, telemetry_setup, wrapped_host
from tests.benchmarks.harness import Row, paired_overheads, ratio


# -- the spec's naive approach -------------------------------------------------------------
@dataclass
class NaiveVetoCounters:
    by_reason: Dict[str, int] = field(default_factory=dict)
    total_signals: int = 0
    total_vetoes: int = 0
    last_signal_ts: Optional[str] = None
    last_veto_ts: Optional[str] = None


_veto_counters = NaiveVetoCounters()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def record_signal() -> None:
    _veto_counters.total_signals += 1
    _veto_counters.last_signal_ts = now_iso()


def record_veto(reason: str) -> None:
    _veto_counters.by_reason[reason] = _veto_counters.by_reason.get(reason, 0) + 1
    _veto_counters.total_vetoes += 1
    _veto_counters.last_veto_ts = now_iso()


class NaiveHost(StubHost):
    def check(self, signal):
        decision = VETO
        record_signal()
        if not decision.approved:
            record_veto(decision.reason)
        return decision


# -- prometheus_client ---------------------------------------------------------------------
def prometheus_hosts():
    """prometheus_client written into the engine's code: labels bound every call, and children bound once.

    The bound host records, for each of bench_calls' metrics-only cases, the events otel_diag records:
    ``approve`` a signal, ``check`` a signal and its veto, ``route_order`` an order and its route event, and
    per slice the slice and its fill or reject — each a ``Counter`` child ``inc()`` and the ``Gauge`` child of
    its last-event time ``set(time.time())``.
    """
    from prometheus_client import CollectorRegistry, Counter, Gauge

    registry = CollectorRegistry(auto_describe=False)
    signals = Counter("trading_signals", "Signals", ["symbol"], registry=registry)
    vetoes = Counter("trading_risk_vetoes", "Vetoes", ["reason", "symbol"], registry=registry)
    orders = Counter("trading_orders", "Orders", ["symbol"], registry=registry)
    router = Counter("trading_router_events", "Router events", ["router_event"], registry=registry)
    last = Gauge("trading_last_event_time_seconds", "Last event", ["event"], registry=registry)

    class PerCall(StubHost):
        def check(self, signal):
            decision = VETO
            signals.labels(decision.signal.symbol).inc()
            last.labels(sc.EVENT_SIGNAL).set(time.time())
            if not decision.approved:
                vetoes.labels(decision.reason, decision.signal.symbol).inc()
                last.labels(sc.EVENT_VETO).set(time.time())
            return decision

    bound_signal = signals.labels(SIGNAL.symbol)
    bound_last_signal = last.labels(sc.EVENT_SIGNAL)
    bound_veto = vetoes.labels(VETO.reason, SIGNAL.symbol)
    bound_last_veto = last.labels(sc.EVENT_VETO)
    bound_order = orders.labels(ROUTE.order.symbol)
    bound_last_order = last.labels(sc.EVENT_ORDER)
    bound_route = router.labels(sc.ROUTER_ROUTE)
    bound_slice = router.labels(sc.ROUTER_TWAP_SLICE)
    bound_outcome = {sc.ROUTER_FILL: router.labels(sc.ROUTER_FILL), sc.ROUTER_REJECT: router.labels(sc.ROUTER_REJECT)}
    bound_last_router = last.labels(sc.EVENT_ROUTER)

    def risk_checked(decision):  # the signal, and its veto if vetoed
        bound_signal.inc()
        bound_last_signal.set(time.time())
        if not decision.approved:
            bound_veto.inc()
            bound_last_veto.set(time.time())
        return decision

    class Bound(StubHost):
        def approve(self, signal):
            return risk_checked(APPROVED)

        def check(self, signal):
            return risk_checked(VETO)

        def route_order(self, order, price=None):
            result = ROUTE
            bound_order.inc()
            bound_last_order.set(time.time())
            bound_route.inc()
            bound_last_router.set(time.time())
            for child in result.slices:  # each slice and its fill or reject
                bound_slice.inc()
                bound_outcome[sc.ROUTER_FILL if child.fill is not None else sc.ROUTER_REJECT].inc()
                bound_last_router.set(time.time())
            return result

    return PerCall(), Bound(), registry


# -- the OTel SDK's synchronous instruments --------------------------------------------------
def sdk_host():
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("bench")
    signals = meter.create_counter(sc.METRIC_SIGNALS)
    counter = meter.create_counter(sc.METRIC_VETOES)
    gauge = meter.create_gauge(sc.METRIC_LAST_EVENT_TIME)
    signal_attrs = {sc.ATTR_SYMBOL: SIGNAL.symbol}
    attrs = {sc.ATTR_VETO_REASON: VETO.reason, sc.ATTR_SYMBOL: SIGNAL.symbol}
    signal_event = {sc.ATTR_EVENT: sc.EVENT_SIGNAL}
    event = {sc.ATTR_EVENT: sc.EVENT_VETO}

    class Sync(StubHost):
        def check(self, signal):
            decision = VETO
            signals.add(1, signal_attrs)
            gauge.set(time.time(), signal_event)
            if not decision.approved:
                counter.add(1, attrs)
                gauge.set(time.time(), event)
            return decision

    return Sync(), reader


LABELS = {
    "naive": "the spec's naive globals (`datetime.now(timezone.utc).isoformat()`), in the engine's code",
    "prom per call": "prometheus_client `Counter.labels(...).inc()` + `Gauge.labels(...).set()`, labels every call",
    "prom bound": "prometheus_client, children bound once (`child.inc()` + `child.set()`) — the reference",
    "sdk sync": "OTel SDK synchronous `Counter.add` + `Gauge.set` (prebuilt attributes)",
    "otel_diag": "otel_diag metrics only, patched as the instrumentor patches a plain method "
                 "(`patch_function`; engine untouched)",
}
REFERENCE = "prom bound"


def run_alternatives(loops: int = 2_000, rounds: int = 31, checked: bool = True) -> List[Row]:
    spec = next(t.spec for t in TARGETS if t.spec.span_name == sc.SPAN_RISK_CHECK)
    bare, naive = StubHost(), NaiveHost()
    per_call, bound, registry = prometheus_hosts()
    sync, reader = sdk_host()
    with quiet_otel(), telemetry_setup("metrics only") as telemetry:
        ours = wrapped_host("check", make_wrapper(spec, ACTIVE))
        calls = {"bare": lambda: bare.check(SIGNAL), "naive": lambda: naive.check(SIGNAL),
                 "prom per call": lambda: per_call.check(SIGNAL), "prom bound": lambda: bound.check(SIGNAL),
                 "sdk sync": lambda: sync.check(SIGNAL),
                 "otel_diag": lambda: ours.check(SIGNAL)}
        overheads, bare_ns = paired_overheads(calls, "bare", loops=loops, rounds=rounds)
        derived = telemetry.snapshot()
    assert derived.total_vetoes > 0 and derived.total_signals == derived.total_vetoes, "otel_diag recorded otherwise"
    assert _veto_counters.total_vetoes > 0 and _veto_counters.total_signals == _veto_counters.total_vetoes
    assert registry.get_sample_value("trading_risk_vetoes_total", {"reason": VETO.reason, "symbol": SIGNAL.symbol}) > 0
    assert registry.get_sample_value("trading_signals_total", {"symbol": SIGNAL.symbol}) > 0
    assert reader.get_metrics_data() is not None
    reference = overheads[REFERENCE]
    rows = []
    for name, label in LABELS.items():
        rows.append(Row("5 vs. alternatives (one vetoed signal: 2 counts + 2 last times)", label,
                        "overhead over the bare call / prometheus_client bound once's (same rounds)",
                        ratio(overheads[name], reference), "x", baseline=reference, figure=overheads[name],
                        figure_unit="ns",
                        note=(f"bare call {bare_ns:.0f} ns" if name == REFERENCE else "" if name == "naive"
                              else f"{ratio(overheads[name], overheads['naive']):.2f}× the naive approach"),
                        key=f"alternatives/{name}"))
    return rows
