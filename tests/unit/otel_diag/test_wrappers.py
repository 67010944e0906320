"""The wrapper factory and @traced_event: transparent calls, one span, one count, errors swallowed."""
from __future__ import annotations

import inspect
import logging

import pytest
import wrapt
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import otel_diag
from otel_diag import semconv as sc
from otel_diag import wrappers
from otel_diag._log import RateLimitedLog
from otel_diag.reader import OTHER
from otel_diag.state import EventState
from otel_diag.wrappers import Binding, EventSpec, Holder, make_wrapper, traced_event

T0 = 1_767_571_200.0


class Boom(Exception):
    pass


@pytest.fixture
def errors(monkeypatch) -> RateLimitedLog:
    """A fresh rate-limited log for the wrappers, so no earlier test's key is still muted."""
    log = RateLimitedLog(logging.getLogger("otel_diag"))
    monkeypatch.setattr(wrappers, "_log", log)
    return log


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def telemetry(exporter):
    """Configured with an in-memory span exporter, a fixed clock and no exporters from the environment."""
    return otel_diag.configure(clock=lambda: T0, span_processors=[SimpleSpanProcessor(exporter)], env={})


@pytest.fixture
def tracer(exporter):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test")
    provider.shutdown()


def wrap(fn, spec: EventSpec, binding=None):
    """``fn`` wrapped by make_wrapper with its own holder (no global state)."""
    holder = Holder()
    holder.binding = binding
    return wrapt.FunctionWrapper(fn, make_wrapper(spec, holder))


def place(symbol: str, quantity: float, *, limit: float = 0.0) -> dict:
    """Place an order (a stand-in for a user's router function)."""
    return {"symbol": symbol, "quantity": quantity, "limit": limit}


# -- @traced_event keeps the function what it was ----------------------------------------------
def test_traced_event_when_decorating_then_name_doc_signature_and_module_are_kept():
    decorated = traced_event("my.router.place", event=sc.EVENT_ROUTER)(place)

    assert decorated.__name__ == "place"
    assert decorated.__doc__ == place.__doc__
    assert decorated.__module__ == place.__module__
    assert inspect.signature(decorated) == inspect.signature(place)
    assert decorated.__wrapped__ is place


def test_traced_event_when_not_configured_then_plain_call_and_no_span(exporter):
    decorated = traced_event("my.router.place", event=sc.EVENT_ROUTER)(place)

    assert decorated("BTCUSDT", 1.5, limit=2.0) == place("BTCUSDT", 1.5, limit=2.0)
    assert exporter.get_finished_spans() == ()


def test_traced_event_when_configured_then_one_span_one_count_and_the_clock_time(telemetry, exporter):
    def attributes(symbol, quantity, **kw):
        return {sc.ATTR_SYMBOL: symbol, sc.ATTR_QUANTITY: quantity}

    decorated = traced_event("my.router.place", event=sc.EVENT_ROUTER, counter=sc.METRIC_ROUTER_EVENTS,
                             attributes=attributes)(place)

    result = decorated("BTCUSDT", 1.5, limit=2.0)

    assert result == {"symbol": "BTCUSDT", "quantity": 1.5, "limit": 2.0}
    (span,) = exporter.get_finished_spans()
    assert span.name == "my.router.place"
    assert dict(span.attributes) == {sc.ATTR_SYMBOL: "BTCUSDT", sc.ATTR_QUANTITY: 1.5}
    derived = telemetry.snapshot()
    assert derived.last_event_times == {sc.EVENT_ROUTER: T0}
    assert derived.router_events == {OTHER: 1}  # a traced_event counter has no attributes
    assert derived.extras["last_trace_ids"] == {sc.EVENT_ROUTER: format(span.context.trace_id, "032x")}


def test_traced_event_when_function_raises_then_same_exception_and_error_span(telemetry, exporter):
    error = Boom("venue down")

    @traced_event("my.router.place", event=sc.EVENT_ROUTER)
    def failing(symbol: str) -> None:
        raise error

    with pytest.raises(Boom) as raised:
        failing("BTCUSDT")

    assert raised.value is error
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "Boom: venue down"  # the API's own format (use_span)
    assert [e.name for e in span.events] == ["exception"]
    assert trace.get_current_span() is trace.INVALID_SPAN  # context detached on the error path too
    assert telemetry.snapshot().last_event_times == {sc.EVENT_ROUTER: T0}  # the attempt is still an event


def test_traced_event_when_nested_then_inner_span_is_a_child_of_the_outer(telemetry, exporter):
    inner = traced_event("inner")(lambda: 42)
    outer = traced_event("outer")(lambda: inner() + 1)

    assert outer() == 43

    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["inner"].parent.span_id == spans["outer"].context.span_id
    assert spans["inner"].context.trace_id == spans["outer"].context.trace_id
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_traced_event_when_method_then_bound_call_and_signature_with_self(telemetry, exporter):
    class Router:
        @traced_event("router.send", event=sc.EVENT_ROUTER)
        def send(self, qty: float) -> float:
            """Send."""
            return qty * 2

    assert Router().send(2.0) == 4.0
    assert list(inspect.signature(Router.send).parameters) == ["self", "qty"]
    assert list(inspect.signature(Router().send).parameters) == ["qty"]
    assert Router.send.__doc__ == "Send."
    assert [s.name for s in exporter.get_finished_spans()] == ["router.send"]


def test_traced_event_when_attributes_callback_raises_then_result_untouched_and_logged_once(
        telemetry, exporter, errors, caplog):
    def bad_attributes(*args, **kwargs):
        raise Boom("extractor bug")

    decorated = traced_event("my.router.place", event=sc.EVENT_ROUTER, attributes=bad_attributes)(place)

    with caplog.at_level(logging.WARNING, logger="otel_diag"):
        results = [decorated("BTCUSDT", q) for q in (1.0, 2.0, 3.0)]

    assert results == [place("BTCUSDT", q) for q in (1.0, 2.0, 3.0)]
    assert len(exporter.get_finished_spans()) == 3  # every span still ended
    logged = [r for r in caplog.records if r.name == "otel_diag"]
    assert len(logged) == 1 and logged[0].exc_info is not None
    assert (errors.errors, errors.suppressed) == (3, 2)


@pytest.mark.parametrize("tracing", [True, False], ids=["tracing", "metrics-only"])
def test_traced_event_when_instrumentation_suppressed_then_no_span_no_count_no_stamp(exporter, tracing):
    telemetry = otel_diag.configure(clock=lambda: T0, span_processors=[SimpleSpanProcessor(exporter)],
                                    tracing=tracing, env={})
    decorated = traced_event("my.router.place", event=sc.EVENT_ROUTER, counter=sc.METRIC_ROUTER_EVENTS)(place)

    with suppress_instrumentation():
        assert decorated("BTCUSDT", 1.0) == place("BTCUSDT", 1.0)

    assert exporter.get_finished_spans() == ()
    assert telemetry.state.counter_points(sc.METRIC_ROUTER_EVENTS) == []
    assert telemetry.state.last_event_times() == {}
    decorated("BTCUSDT", 2.0)  # outside: recorded as usual
    assert telemetry.state.counter_points(sc.METRIC_ROUTER_EVENTS) == [(1, {})]
    assert len(exporter.get_finished_spans()) == (1 if tracing else 0)


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt(), GeneratorExit()],
                         ids=lambda e: type(e).__name__)
def test_traced_event_when_base_exception_then_span_ends_without_error_or_exception_event(telemetry, exporter, exc):
    @traced_event("my.router.place", event=sc.EVENT_ROUTER)
    def stop():
        raise exc

    with pytest.raises(type(exc)) as raised:
        stop()

    assert raised.value is exc
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.UNSET and span.events == ()


def test_traced_event_when_shut_down_then_plain_call_and_nothing_recorded(telemetry, exporter):
    decorated = traced_event("my.router.place", event=sc.EVENT_ROUTER, counter=sc.METRIC_ROUTER_EVENTS)(place)
    decorated("BTCUSDT", 1.0)

    otel_diag.shutdown()
    assert decorated("BTCUSDT", 2.0) == place("BTCUSDT", 2.0)

    assert len(exporter.get_finished_spans()) == 1
    assert telemetry.state.counter_points(sc.METRIC_ROUTER_EVENTS) == [(1, {})]
    assert wrappers.ACTIVE.binding is None


# -- make_wrapper: the factory the patch table uses ---------------------------------------------
def test_make_wrapper_when_no_binding_then_plain_call_and_nothing_recorded():
    calls = []
    wrapped = wrap(place, EventSpec("x", record=lambda *a: calls.append(a), annotate=lambda *a: calls.append(a)))

    assert wrapped("ETHUSDT", 3.0) == place("ETHUSDT", 3.0)
    assert calls == []


def test_make_wrapper_when_recorder_raises_then_result_untouched_and_logged_once(tracer, exporter, errors, caplog):
    def bad_record(b, instance, args, kwargs, result, trace_id):
        raise Boom("recorder bug")

    state = EventState(lambda: T0)
    wrapped = wrap(place, EventSpec("x", record=bad_record), Binding(state, tracer))

    with caplog.at_level(logging.WARNING, logger="otel_diag"):
        assert wrapped("ETHUSDT", 3.0) == place("ETHUSDT", 3.0)
        assert wrapped("ETHUSDT", 4.0) == place("ETHUSDT", 4.0)

    assert len([r for r in caplog.records if r.name == "otel_diag"]) == 1
    assert len(exporter.get_finished_spans()) == 2


def test_make_wrapper_when_recorder_raises_on_metrics_only_path_then_result_untouched(errors):
    def bad_record(b, instance, args, kwargs, result, trace_id):
        raise Boom("recorder bug")

    wrapped = wrap(place, EventSpec("x", record=bad_record), Binding(EventState(lambda: T0), None))

    assert wrapped("ETHUSDT", 3.0) == place("ETHUSDT", 3.0)
    assert errors.errors == 1


def test_make_wrapper_when_host_raises_and_recorder_raises_then_host_exception_propagates(tracer, errors):
    error = Boom("host")

    def host():
        raise error

    def bad_record(b, instance, args, kwargs, result, trace_id):
        raise ValueError("recorder bug")

    def bad_annotate(span, instance, args, kwargs, result):
        raise ValueError("annotator bug")

    for binding in (Binding(EventState(lambda: T0), tracer), Binding(EventState(lambda: T0), None)):
        wrapped = wrap(host, EventSpec("x", record=bad_record, annotate=bad_annotate), binding)
        with pytest.raises(Boom) as raised:
            wrapped()
        assert raised.value is error


def test_make_wrapper_when_host_raises_then_recorder_sees_missing_result(tracer):
    seen = []

    def record(b, instance, args, kwargs, result, trace_id):
        seen.append(result is wrappers._MISSING)

    def host():
        raise Boom()

    wrapped = wrap(host, EventSpec("x", record=record), Binding(EventState(lambda: T0), tracer))
    with pytest.raises(Boom):
        wrapped()

    assert seen == [True]


def test_make_wrapper_when_tracing_off_then_counts_without_spans(exporter):
    state = EventState(lambda: T0)
    binding = Binding(state, None)

    def record(b, instance, args, kwargs, result, trace_id):
        b.state.hit(b.signals.get(args[0]), sc.EVENT_SIGNAL, trace_id)

    wrapped = wrap(place, EventSpec(sc.SPAN_SIGNAL_GENERATE, record=record), binding)
    wrapped("BTCUSDT", 1.0)
    wrapped("BTCUSDT", 2.0)

    assert state.counter_points(sc.METRIC_SIGNALS) == [(2, {sc.ATTR_SYMBOL: "BTCUSDT"})]
    assert state.last_trace_ids() == {}
    assert exporter.get_finished_spans() == ()


def test_make_wrapper_when_span_records_then_annotator_sees_args_and_result(tracer, exporter):
    def annotate(span, instance, args, kwargs, result):
        span.set_attributes({sc.ATTR_SYMBOL: args[0], sc.ATTR_QUANTITY: result["quantity"]})

    wrapped = wrap(place, EventSpec(sc.SPAN_ORDER_ROUTE, annotate=annotate), Binding(EventState(lambda: T0), tracer))
    wrapped("SOLUSDT", 7.0)

    (span,) = exporter.get_finished_spans()
    assert (span.name, dict(span.attributes)) == (sc.SPAN_ORDER_ROUTE, {sc.ATTR_SYMBOL: "SOLUSDT", sc.ATTR_QUANTITY: 7.0})


# -- the rate-limited log ------------------------------------------------------------------------
def test_rate_limited_log_when_interval_not_elapsed_then_logs_a_key_once(caplog):
    log = RateLimitedLog(logging.getLogger("otel_diag.test"))
    with caplog.at_level(logging.WARNING, logger="otel_diag.test"):
        for _ in range(5):
            log.warning("k1", "first kind")
        log.warning("k2", "second kind")

    assert [r.getMessage() for r in caplog.records] == ["first kind", "second kind"]
    assert (log.errors, log.suppressed) == (6, 4)


def test_rate_limited_log_when_interval_elapsed_then_logs_again(caplog):
    log = RateLimitedLog(logging.getLogger("otel_diag.test"), interval_seconds=0.0)
    with caplog.at_level(logging.WARNING, logger="otel_diag.test"):
        log.warning("k", "again")
        log.warning("k", "again")

    assert len(caplog.records) == 2


def test_rate_limited_log_when_logging_itself_fails_then_swallows():
    class BrokenLogger(logging.Logger):
        def warning(self, *args, **kwargs):
            raise RuntimeError("handler broke")

    log = RateLimitedLog(BrokenLogger("broken"))
    try:
        raise Boom()
    except Boom:
        log.exception("k", "message")  # must not raise
    log.warning("k2", "message")
