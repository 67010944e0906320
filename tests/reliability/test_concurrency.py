"""Concurrency: 8 threads recording at once — counts exact, last-event times never go backwards.

The threads go through the real wrappers: a ``traced_event``-decorated function, and the
engine's own patch-table specs (``risk.check``, ``order.route``) wrapped around stand-in
functions that return the engine's real result types — the same ``make_wrapper`` code path the
instrumentor installs. Meanwhile two readers collect (the diagnostics reader and an SDK
in-memory reader) and a watcher polls the event state. The GIL switch interval is cut to
10 µs so the threads interleave inside the wrappers, and the clock sometimes yields between
reading the time and recording it, so events arrive out of order on purpose.
"""
from __future__ import annotations

import itertools
import sys
import threading
import time
from typing import Dict, List

import pytest
import wrapt
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import otel_diag
from execution.diagnostics_metrics import record_router_event
from execution.models import Order, RiskDecision, Side, Signal
from otel_diag import semconv as sc
from otel_diag.default_targets import TARGETS
from otel_diag.wrappers import ACTIVE, make_wrapper

THREADS = 8
CALLS = 2_000          # per thread, per kind of call
START = 1_767_571_200.0
REASONS = ("max_gross_exposure", "per_symbol_cap", "cooldown_after_exit")


class TaggedClock:
    """A strictly increasing clock; remembers the largest time it gave to each event kind."""

    def __init__(self) -> None:
        self._ticks = itertools.count(1)
        self._local = threading.local()
        self._lock = threading.Lock()
        self.max_given: Dict[str, float] = {}

    def tag(self, event: str) -> None:
        self._local.event = event

    def __call__(self) -> float:
        tick = next(self._ticks)  # atomic in CPython
        now = START + tick * 1e-3
        event = getattr(self._local, "event", None)
        if event is not None:
            with self._lock:
                if now > self.max_given.get(event, 0.0):
                    self.max_given[event] = now
        if tick % 5 == 0:
            time.sleep(0)  # yield between reading the time and recording it: out-of-order arrivals
        return now


def _spec(span_name: str):
    return next(t.spec for t in TARGETS if t.spec.span_name == span_name)


@pytest.fixture
def fast_switching():
    saved = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(saved)


def test_eight_threads_when_recording_at_once_then_counts_exact_and_last_times_never_go_backwards(fast_switching):
    # Arrange
    clock = TaggedClock()
    sdk_reader = InMemoryMetricReader()
    telemetry = otel_diag.configure(clock=clock, env={}, metric_readers=[sdk_reader], tracing=False)
    signal = otel_diag.traced_event("reliability.signal", event=sc.EVENT_SIGNAL,
                                    counter=sc.METRIC_SIGNALS)(lambda: None)
    risk_check = wrapt.FunctionWrapper(lambda decision: decision, make_wrapper(_spec(sc.SPAN_RISK_CHECK), ACTIVE))
    route = wrapt.FunctionWrapper(lambda order: None, make_wrapper(_spec(sc.SPAN_ORDER_ROUTE), ACTIVE))
    start = threading.Barrier(THREADS + 3)
    done = threading.Event()
    problems: List[str] = []

    def trader(n: int) -> None:
        symbol = f"SYM{n}"
        vetoes = [RiskDecision(signal=Signal(symbol, Side.BUY, 100.0, START, 1.0, 0.01), approved=False, reason=r)
                  for r in REASONS]
        order = Order(order_id=f"o-{n}", symbol=symbol, side=Side.BUY, quantity=1.0, ts=START)
        start.wait()
        for i in range(CALLS):
            clock.tag(sc.EVENT_SIGNAL)
            signal()
            clock.tag("signal+veto")  # a risk check stamps its signal and its veto with one clock reading
            assert risk_check(vetoes[i % len(REASONS)]) is vetoes[i % len(REASONS)]
            clock.tag("order+router")  # route stamps two kinds with one clock reading
            route(order)
            clock.tag(sc.EVENT_ROUTER)
            record_router_event("reliability")

    def watcher() -> None:
        seen: Dict[str, float] = {}
        start.wait()
        while not done.is_set():  # bounded: the traders set `done` when they finish
            for event, t in telemetry.state.last_event_times().items():
                if t < seen.get(event, float("-inf")):
                    problems.append(f"state: {event} went back from {seen[event]} to {t}")
                seen[event] = t

    def collector() -> None:
        last_times: Dict[str, float] = {}
        last_total = 0
        start.wait()
        while not done.is_set():
            derived = telemetry.snapshot()
            sdk_reader.get_metrics_data()
            for event, t in derived.last_event_times.items():
                if t < last_times.get(event, float("-inf")):
                    problems.append(f"snapshot: {event} went back from {last_times[event]} to {t}")
                last_times[event] = t
            if derived.total_signals < last_total:
                problems.append(f"snapshot: signals went back from {last_total} to {derived.total_signals}")
            last_total = derived.total_signals
            time.sleep(0.001)

    threads = [threading.Thread(target=trader, args=(n,), name=f"trader-{n}") for n in range(THREADS)]
    helpers = [threading.Thread(target=watcher, name="watcher"), threading.Thread(target=collector, name="collector")]

    # Act
    for t in threads + helpers:
        t.start()
    start.wait()
    for t in threads:
        t.join(120)
    done.set()
    for t in helpers:
        t.join(10)

    # Assert: exact counts, through the metric points every reader sees
    derived = telemetry.snapshot()
    per_thread_vetoes = {r: CALLS // len(REASONS) + (1 if i < CALLS % len(REASONS) else 0)
                         for i, r in enumerate(REASONS)}
    assert problems == [], problems[:5]
    assert derived.total_signals == 2 * THREADS * CALLS  # the decorated signals, and those the risk engine got
    assert derived.orders_by_symbol == {f"SYM{n}": CALLS for n in range(THREADS)}
    assert derived.vetoes == {(r, f"SYM{n}"): per_thread_vetoes[r] for r in REASONS for n in range(THREADS)}
    assert derived.router_events == {sc.ROUTER_ROUTE: THREADS * CALLS, "reliability": THREADS * CALLS}
    # and the SDK reader agrees point for point
    sdk_points = {m.name: sum(p.value for p in m.data.data_points)
                  for rm in sdk_reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics
                  if sm.scope.name == sc.INSTRUMENTATION_NAME for m in sm.metrics}
    assert sdk_points[sc.METRIC_SIGNALS] == 2 * THREADS * CALLS
    assert sdk_points[sc.METRIC_VETOES] == THREADS * CALLS
    assert sdk_points[sc.METRIC_ROUTER_EVENTS] == 2 * THREADS * CALLS
    # the last time of each kind is the latest time handed to that kind, whatever order they arrived in
    last = telemetry.state.last_event_times()
    assert last[sc.EVENT_SIGNAL] == max(clock.max_given[sc.EVENT_SIGNAL], clock.max_given["signal+veto"])
    assert last[sc.EVENT_VETO] == clock.max_given["signal+veto"]
    assert last[sc.EVENT_ROUTER] == max(clock.max_given[sc.EVENT_ROUTER], clock.max_given["order+router"])
    assert last[sc.EVENT_ORDER] == clock.max_given["order+router"]  # one reading stamps both
