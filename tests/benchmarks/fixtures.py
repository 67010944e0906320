"""What the benchmarks wrap and configure: stub engine hosts, prebuilt engine results, telemetry set-ups.

Usage::

    with telemetry_setup("metrics only") as telemetry:
        host = wrapped_host(make_wrapper(spec, ACTIVE))
        host.check(SIGNAL)

The stub hosts return prebuilt engine values (a vetoed ``RiskDecision``, a ``Signal``, a
``RouteResult``), so the difference between a stub and its wrapped twin is the wrapper's
cost alone, whatever the engine's own work costs.
"""
from __future__ import annotations

import contextlib
import logging
import time
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional

import wrapt
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

import otel_diag
from execution.config import AppConfig
from execution.engine import CycleResult
from execution.models import (Bar, ExitScanResult, Order, Position, PositionSide, RiskDecision, RouteResult, Side,
                              Signal, SliceResult, TpSlEntry)
from otel_diag import semconv as sc
from otel_diag.wrappers import patch_function
from tests.fixtures.collectors import DropSpans

T0 = 1_767_571_200.0
SYMBOL = "BTCUSDT"
BAR = Bar(T0, SYMBOL, 100.0, 101.0, 99.0, 100.5, 12.0)
SIGNAL = Signal(SYMBOL, Side.BUY, 100.5, T0, 1.0, 0.001)
VETO = RiskDecision(SIGNAL, False, 0.1, 10.05, "per_symbol_cap", "per_symbol_cap: cap=1800.0, notional=1900.0")
APPROVED = RiskDecision(SIGNAL, True, 0.1, 10.05)
ORDER = Order("E000001", SYMBOL, Side.BUY, 0.1, T0)
ROUTE = RouteResult(ORDER, (SliceResult(ORDER, 0, 0.1, None, 1, "rejected"),), 0.0)
_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT")
_POSITIONS = tuple(Position(s, PositionSide.LONG, 1.0, 100.0, T0, 99.0) for s in _SYMBOLS)
SCAN = ExitScanResult(T0, _POSITIONS, tuple(TpSlEntry(s, PositionSide.LONG, 101.0, 99.5, T0) for s in _SYMBOLS[:4]),
                      (), _POSITIONS[4:])

CONFIG = AppConfig()  # the shipped strategy's 8 symbols: the universe a cycle stamps
CYCLE_BARS = {s: Bar(T0, s, 100.0, 101.0, 99.0, 100.5, 12.0) for s in CONFIG.strategy.symbols}
CYCLE = CycleResult(0, T0, 1, SCAN, bars=CYCLE_BARS)

VARIANTS = ("metrics only", "sampler off", "recording span")


class StubHost:
    """The engine's traced methods, answering prebuilt results."""

    cfg = CONFIG

    def generate(self, bar: Bar) -> Signal:
        return SIGNAL

    def check(self, signal: Signal) -> RiskDecision:
        return VETO

    def approve(self, signal: Signal) -> RiskDecision:
        return APPROVED

    def route_order(self, order: Order, price: Optional[float] = None) -> RouteResult:
        return ROUTE

    def scan(self, bars: Dict[str, Bar]) -> ExitScanResult:
        return SCAN

    def run_cycle(self, index: int, ts: float, bars: Dict[str, Bar]) -> CycleResult:
        return CYCLE


class Case(NamedTuple):
    """One per-call benchmark: the patch-table span whose wrapper is timed, on which stub method."""

    span: str
    method: str
    call: Callable[[object], object]
    what: str


# case name -> the call it times
CALLS: Dict[str, Case] = {
    "signal.generate": Case(sc.SPAN_SIGNAL_GENERATE, "generate", lambda h: h.generate(BAR),
                            "signal.generate (span only; 8 calls a cycle)"),
    "risk.check approved": Case(sc.SPAN_RISK_CHECK, "approve", lambda h: h.approve(SIGNAL),
                                "risk.check, approved (a signal: 1 series + stamp)"),
    "risk.check vetoed": Case(sc.SPAN_RISK_CHECK, "check", lambda h: h.check(SIGNAL),
                              "risk.check, vetoed (a signal and a veto: 2 series + 2 stamps, one lock)"),
    "order.route": Case(sc.SPAN_ORDER_ROUTE, "route_order", lambda h: h.route_order(ORDER, 100.5),
                        "order.route (an order, its route event, a slice and its reject)"),
    "exit.scan": Case(sc.SPAN_EXIT_SCAN, "scan", lambda h: h.scan({}),
                      "exit.scan (5 positions; count + coverage gauges; 1 call a cycle)"),
    "executor.cycle": Case(sc.SPAN_EXECUTOR_CYCLE, "run_cycle", lambda h: h.run_cycle(0, T0, CYCLE_BARS),
                           "executor.cycle (8 symbols' last bar and price change stamped: one loop, one lock; "
                           "1 call a cycle)"),
}


class EchoHost:
    """Traced methods that answer what they are handed: one host, any symbol or reason."""

    def generate(self, signal: Signal) -> Signal:
        return signal

    def check(self, decision: RiskDecision) -> RiskDecision:
        return decision


def wrapped_host(method: str, wrapper: Callable, base: type = StubHost, wrapt_patch: bool = False):
    """A ``base`` whose ``method`` is wrapped by ``wrapper`` exactly as the instrumentor patches a class.

    ``wrapt_patch=True`` patches with a plain ``wrapt.FunctionWrapper`` instead, as
    ``wrapt.wrap_function_wrapper`` would (a bound wrapper built on every access): the comparison
    that keeps ``patch_function`` for plain methods (bench_alternatives).
    """
    original = base.__dict__[method]
    patch = wrapt.FunctionWrapper(original, wrapper) if wrapt_patch else patch_function(original, wrapper)
    cls = type("Wrapped" + base.__name__, (base,), {method: patch})
    return cls()


@contextlib.contextmanager
def quiet_otel() -> Iterator[None]:
    """Silence the SDK's "Queue full, dropping Span" and similar chatter during measurements."""
    loggers = [logging.getLogger(n) for n in ("opentelemetry", "otel_diag")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def configure_kwargs(variant: str, processors: List[BatchSpanProcessor]) -> dict:
    """``otel_diag.configure`` arguments of a variant (no OTLP, no Prometheus: nothing leaves the process)."""
    if variant == "metrics only":
        return {"tracing": False, "env": {}}
    env = {"OTEL_TRACES_SAMPLER": "always_off"} if variant == "sampler off" else {}
    return {"env": env, "span_processors": processors}


@contextlib.contextmanager
def telemetry_setup(variant: str, clock: Callable[[], float] = time.time, max_queue_size: int = 2048,
                    metric_readers: tuple = ()) -> Iterator["otel_diag.Telemetry"]:
    """``otel_diag.configure`` for one variant, the engine patched; shut down on exit."""
    processors = [] if variant == "metrics only" else [
        BatchSpanProcessor(DropSpans(), max_queue_size=max_queue_size,
                           max_export_batch_size=min(512, max_queue_size))]
    telemetry = otel_diag.configure(clock=clock, metric_readers=metric_readers, **configure_kwargs(variant, processors))
    if variant == "sampler off":
        sampler = getattr(telemetry.tracer_provider, "sampler", None)
        assert sampler is ALWAYS_OFF, f"sampler off: the tracer provider samples with {sampler}"
    try:
        yield telemetry
    finally:
        otel_diag.shutdown()


def flush(telemetry: "otel_diag.Telemetry") -> None:
    if telemetry.tracer_provider is not None:
        telemetry.tracer_provider.force_flush()
