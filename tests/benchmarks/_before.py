"""The hot path as it was before issue 7 (commit 63cf10c), frozen so "before" is measured in the same run.

Usage::

    holder, binding = before_binding(telemetry.state.clock, tracer)
    wrapper = make_wrapper(BEFORE_SPECS[SPAN_RISK_CHECK], holder)   # wrap a host the same way as today's

    with installed_in_engine():        # or: configure() patches the engine with the old hot path
        run(opts, hooks)

Only what the benchmarks wrap is kept: ``make_wrapper``, ``EventState.hit``, ``Family.get``
and the recorders of ``signal.generate``, ``risk.check``, ``order.route`` and ``exit.scan``
(with ``exit_gauges``), verbatim apart from names. The annotators did not change and are today's.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_diag import semconv as sc
from otel_diag._log import RateLimitedLog
from otel_diag.state import EventState, ExitGauges, Series
from otel_diag.targets import TARGETS, _arg
from otel_diag.wrappers import EventSpec, Holder, install_patch

_log = RateLimitedLog(logging.getLogger("otel_diag.bench.before"))
_MISSING = object()


class BeforeState(EventState):
    def hit(self, series: Optional[Series], event: Optional[str], trace_id: int = 0) -> None:
        now = self.clock()
        with self._lock:
            if series is not None:
                series.value += 1
            if event is not None and now >= self._last_time.get(event, float("-inf")):
                self._last_time[event] = now
                if trace_id:
                    self._last_trace[event] = trace_id

    def set_exit_gauges(self, gauges: ExitGauges) -> None:
        self._exit_source = None
        self._exit_gauges = gauges


class BeforeFamily:
    __slots__ = ("state", "metric", "names", "_cache")

    def __init__(self, state: EventState, metric: str, names: Tuple[str, ...]) -> None:
        self.state = state
        self.metric = metric
        self.names = names
        self._cache: Dict[Any, Series] = {}

    def get(self, key: Any = ()) -> Series:
        found = self._cache.get(key)
        if found is None:
            values = key if isinstance(key, tuple) else (key,)
            found = self.state.series(self.metric, dict(zip(self.names, values)))
            if len(self._cache) < 100_000:
                self._cache[key] = found
        return found


class BeforeBinding:
    def __init__(self, state: EventState, tracer: Optional[trace.Tracer]) -> None:
        self.state = state
        self.tracer = tracer
        # The instrumentor patches span-only targets only for a binding that makes spans; before
        # issue 7 every target was patched, so say "makes spans" whatever the tracer.
        self._span_tracer = tracer or True
        self.signals = BeforeFamily(state, sc.METRIC_SIGNALS, (sc.ATTR_SYMBOL,))
        self.orders = BeforeFamily(state, sc.METRIC_ORDERS, (sc.ATTR_SYMBOL,))
        self.vetoes = BeforeFamily(state, sc.METRIC_VETOES, (sc.ATTR_VETO_REASON, sc.ATTR_SYMBOL))
        self.router = BeforeFamily(state, sc.METRIC_ROUTER_EVENTS, (sc.ATTR_ROUTER_EVENT,))
        self.exit_scans = BeforeFamily(state, sc.METRIC_EXIT_SCANS, ())
        self.exit_triggers = BeforeFamily(state, sc.METRIC_EXIT_TRIGGERS, (sc.ATTR_EXIT_REASON,))


def make_wrapper(spec: EventSpec, holder: Holder) -> Callable:
    span_name = spec.span_name
    record = spec.record
    annotate = spec.annotate

    def _record(b: Any, args: tuple, kwargs: dict, result: Any, trace_id: int) -> None:
        try:
            record(b, args, kwargs, result, trace_id)
        except Exception:
            _log.exception("record:" + span_name, "otel_diag: recording an event failed")

    def wrapper(wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
        b = holder.binding
        if b is None:
            return wrapped(*args, **kwargs)
        tracer = b.tracer
        if tracer is None:
            if record is None:
                return wrapped(*args, **kwargs)
            result = _MISSING
            try:
                result = wrapped(*args, **kwargs)
                return result
            finally:
                _record(b, args, kwargs, result, 0)
        if not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        try:
            span = tracer.start_span(span_name, kind=SpanKind.INTERNAL)
            token = otel_context.attach(trace.set_span_in_context(span))
        except Exception:
            _log.exception("span:" + span_name, "otel_diag: starting a span failed")
            return wrapped(*args, **kwargs)
        result = _MISSING
        try:
            result = wrapped(*args, **kwargs)
            return result
        except BaseException as exc:
            try:
                if span.is_recording():
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            except Exception:
                _log.exception("span-error:" + span_name, "otel_diag: recording an exception failed")
            raise
        finally:
            try:
                otel_context.detach(token)
                ctx = span.get_span_context()
                if record is not None:
                    _record(b, args, kwargs, result, ctx.trace_id if ctx.trace_flags.sampled else 0)
                if annotate is not None and span.is_recording():
                    annotate(span, args, kwargs, result)
            except Exception:
                _log.exception("annotate:" + span_name, "otel_diag: span attributes failed")
            finally:
                try:
                    span.end()
                except Exception:
                    _log.exception("end:" + span_name, "otel_diag: ending a span failed")

    return wrapper


def _record_signal(b: Any, args: tuple, kwargs: dict, result: Any, trace_id: int) -> None:
    if result is not None and result is not _MISSING:
        b.state.hit(b.signals.get(result.symbol), sc.EVENT_SIGNAL, trace_id)


def _record_risk(b: Any, args: tuple, kwargs: dict, result: Any, trace_id: int) -> None:
    if result is not _MISSING and not result.approved:
        series = b.vetoes.get((result.reason, result.symbol))
        b.state.hit(series, sc.EVENT_VETO, trace_id)


def _record_route(b: Any, args: tuple, kwargs: dict, result: Any, trace_id: int) -> None:
    order = _arg(args, kwargs, 0, "order")
    state = b.state
    state.hit(b.orders.get(order.symbol), sc.EVENT_ORDER, trace_id)
    state.hit(b.router.get(sc.ROUTER_ROUTE), sc.EVENT_ROUTER, trace_id)


def _record_slice(b: Any, args: tuple, kwargs: dict, result: Any, trace_id: int) -> None:
    router = b.router
    state = b.state
    state.hit(router.get(sc.ROUTER_TWAP_SLICE), sc.EVENT_ROUTER, trace_id)
    if result is not _MISSING:
        outcome = sc.ROUTER_FILL if result.fill is not None else sc.ROUTER_REJECT
        state.hit(router.get(outcome), sc.EVENT_ROUTER, trace_id)


def _record_trigger(b: Any, args: tuple, kwargs: dict, result: Any, trace_id: int) -> None:
    reason = _arg(args, kwargs, 1, "reason")
    b.state.hit(b.exit_triggers.get(reason), sc.EVENT_EXIT_TRIGGER, trace_id)


def exit_gauges(result: Any) -> ExitGauges:
    open_keys = {p.key for p in result.open_positions}
    registered = {e.key for e in result.tp_sl_entries}
    missing = tuple(sorted(open_keys - registered))
    covered = len(open_keys & registered)
    return ExitGauges(
        open_positions=len(open_keys),
        tp_sl_registered=covered,
        tp_sl_orphaned=len(registered - open_keys),
        coverage=covered / len(open_keys) if open_keys else 0.0,
        missing=missing,
        underwater_unprotected=tuple(sorted(p.key for p in result.underwater_without_tp_sl)),
    )


def _record_scan(b: Any, args: tuple, kwargs: dict, result: Any, trace_id: int) -> None:
    state = b.state
    state.hit(b.exit_scans.get(), sc.EVENT_EXIT_SCAN, trace_id)
    if result is not _MISSING:
        state.set_exit_gauges(exit_gauges(result))


_ANNOTATE = {t.spec.span_name: t.spec.annotate for t in TARGETS}
BEFORE_SPECS: Dict[str, EventSpec] = {
    sc.SPAN_SIGNAL_GENERATE: EventSpec(sc.SPAN_SIGNAL_GENERATE, _record_signal, _ANNOTATE[sc.SPAN_SIGNAL_GENERATE]),
    sc.SPAN_RISK_CHECK: EventSpec(sc.SPAN_RISK_CHECK, _record_risk, _ANNOTATE[sc.SPAN_RISK_CHECK]),
    sc.SPAN_ORDER_ROUTE: EventSpec(sc.SPAN_ORDER_ROUTE, _record_route, _ANNOTATE[sc.SPAN_ORDER_ROUTE]),
    sc.SPAN_EXIT_SCAN: EventSpec(sc.SPAN_EXIT_SCAN, _record_scan, _ANNOTATE[sc.SPAN_EXIT_SCAN]),
    sc.SPAN_ORDER_TWAP_SLICE: EventSpec(sc.SPAN_ORDER_TWAP_SLICE, _record_slice, _ANNOTATE[sc.SPAN_ORDER_TWAP_SLICE]),
    sc.SPAN_EXIT_TRIGGER: EventSpec(sc.SPAN_EXIT_TRIGGER, _record_trigger, _ANNOTATE[sc.SPAN_EXIT_TRIGGER]),
}


def before_binding(clock: Callable[[], float], tracer: Optional[trace.Tracer]) -> Tuple[Holder, BeforeBinding]:
    """A holder bound to a fresh pre-issue-7 state and ``tracer`` (the tracer of today's set-up)."""
    holder = Holder()
    holder.binding = BeforeBinding(BeforeState(clock), tracer)
    return holder, holder.binding


def _before_binding(state: EventState, tracer: Optional[trace.Tracer]) -> BeforeBinding:
    state.__class__ = BeforeState  # the configured state, with the old hit()
    return BeforeBinding(state, tracer)


def _before_wrapper(spec: EventSpec, holder: Holder) -> Callable:
    return make_wrapper(BEFORE_SPECS.get(spec.span_name, spec), holder)


def _plain_patch(owner: Any, attr: str, wrapper: Callable) -> None:
    """How methods were patched before issue 7: a plain FunctionWrapper, bound again on every access."""
    install_patch(owner, attr, wrapper, use_wrapt=True)


@contextlib.contextmanager
def installed_in_engine() -> Iterator[None]:
    """While open, ``otel_diag.configure()`` patches the engine with the pre-issue-7 hot path."""
    import otel_diag.instrumentor as instrumentor

    saved = instrumentor.Binding, instrumentor.make_wrapper, instrumentor.install_patch
    instrumentor.Binding, instrumentor.make_wrapper, instrumentor.install_patch = \
        _before_binding, _before_wrapper, _plain_patch
    try:
        yield
    finally:
        instrumentor.Binding, instrumentor.make_wrapper, instrumentor.install_patch = saved
