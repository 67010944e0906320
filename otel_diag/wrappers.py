"""One wrapper factory for every traced event: a span, a count and a last-event time.

Usage — as a decorator on your own strategy or router code::

    import otel_diag

    @otel_diag.traced_event("my_router.send", event="router")      # stamps router liveness on every call
    def send(order):
        ...

(The engine's own signals are counted at ``risk.check``; a decorated signal function of an
engine that is also instrumented would count them twice — stamp it without ``counter``.)

and as patches (:func:`install_patch`: a plain method gets a function of the same name and
signature, anything else a ``wrapt.FunctionWrapper``), applied by
:class:`otel_diag.instrumentor.ExecutionInstrumentor` from the table in :mod:`otel_diag.targets`.
Either way the wrapper

- calls ``wrapped(*args, **kwargs)`` and returns or raises exactly what it does;
- on the hot path updates only plain in-process state (:class:`~otel_diag.state.EventState`);
- records nothing at all — no span, count or stamp — inside ``suppress_instrumentation()`` (what the
  public ``is_instrumentation_enabled()`` answers, read at half its cost: ``otel_diag._internals``);
- opens a span only when tracing is on, and does attribute work only if the span records; an ``Exception``
  from the call sets the span's status to ERROR ``"<Type>: <message>"`` with an exception event, as the
  API's ``use_span`` does (``SystemExit``, ``KeyboardInterrupt`` and ``GeneratorExit`` end it unmarked);
- catches, logs (rate-limited) and drops any error of its own.
"""
from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
import types
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_diag import semconv as sc
from otel_diag._internals import SUPPRESS_KEYS, current_context
from otel_diag._log import RateLimitedLog
from otel_diag.state import EventState, Series

_log = RateLimitedLog(logging.getLogger("otel_diag"))
_MISSING = object()
_NO_INSTANCE = object()
_OURS = "__otel_diag_wrapper__"  # set on every wrapper make_wrapper returns: tells our wrapt patches from others'
# wrapt 2 splits the proxy classes: FunctionWrapper derives from BaseObjectProxy, not ObjectProxy.
_PROXY = getattr(wrapt, "BaseObjectProxy", wrapt.ObjectProxy)
_INTERNAL_METRICS_ENV = "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"  # the SDK then counts dropped spans too

_SUPPRESS, _SUPPRESS_PLAIN = SUPPRESS_KEYS
_MAX_CACHED_KEYS = 100_000  # keys remembered per family; the state's own cap bounds the series

# record(binding, instance, args, kwargs, result, trace_id): count and stamp; result is _MISSING when the call
# raised; instance is what a method was called on (None for a plain function).
Recorder = Callable[["Binding", Any, tuple, dict, Any, int], None]
# annotate(span, instance, args, kwargs, result): span attributes, called only when the span records.
Annotator = Callable[[Any, Any, tuple, dict, Any], None]


class Family(dict):
    """The series of one metric keyed by attribute values; each key is bound once, then one dict lookup.

    A dict from key to :class:`~otel_diag.state.Series`: ``family[key]`` is a C-level lookup on the
    hot path and binds the series on first use (``__missing__``); ``get(key)`` does the same.
    """

    __slots__ = ("state", "metric", "names")

    def __init__(self, state: EventState, metric: str, names: Tuple[str, ...]) -> None:
        super().__init__()
        self.state = state
        self.metric = metric
        self.names = names

    def __missing__(self, key: Any) -> Series:
        values = key if isinstance(key, tuple) else (key,)
        found = self.state.series(self.metric, dict(zip(self.names, values)))
        # Beyond twice the state's series cap every new key folds into the overflow series anyway:
        # remembering unbounded values (ids, figures in a reason) would only grow memory.
        if len(self) < min(_MAX_CACHED_KEYS, 2 * self.state.max_series_per_metric):
            self[key] = found
        return found

    def get(self, key: Any = ()) -> Series:  # type: ignore[override]
        """The series for ``key`` (one value, or a tuple of values for several attribute names)."""
        return self[key]


class Binding:
    """What an active instrumentation writes to: the event state, the tracer, and metric families."""

    def __init__(self, state: EventState, tracer: Optional[trace.Tracer]) -> None:
        self.state = state
        self.tracer = tracer  # sets _span_tracer, what the wrappers read
        self._families: Dict[Tuple[str, Tuple[str, ...]], Family] = {}
        # The engine's families, bound once so the wrappers do one attribute read.
        self.signals = self.family(sc.METRIC_SIGNALS, sc.ATTR_SYMBOL)
        self.orders = self.family(sc.METRIC_ORDERS, sc.ATTR_SYMBOL)
        self.vetoes = self.family(sc.METRIC_VETOES, sc.ATTR_VETO_REASON, sc.ATTR_SYMBOL)
        self.router = self.family(sc.METRIC_ROUTER_EVENTS, sc.ATTR_ROUTER_EVENT)
        self.exit_scans = self.family(sc.METRIC_EXIT_SCANS)
        self.exit_triggers = self.family(sc.METRIC_EXIT_TRIGGERS, sc.ATTR_EXIT_REASON)

    @property
    def tracer(self) -> Optional[trace.Tracer]:
        return self._tracer

    @tracer.setter
    def tracer(self, tracer: Optional[trace.Tracer]) -> None:
        self._tracer = tracer
        # A tracer whose sampler drops every span whatever the context produces nothing but a
        # non-recording span (≈ 3 µs of SDK work per call): the wrappers then take the metrics-only path.
        self._span_tracer = None if tracer is None or never_samples(tracer) else tracer

    def family(self, metric: str, *names: str) -> Family:
        key = (metric, names)
        fam = self._families.get(key)
        if fam is None:
            fam = self._families[key] = Family(self.state, metric, names)
        return fam


def never_samples(tracer: Any) -> bool:
    """True when ``tracer`` is an SDK tracer with the static ``ALWAYS_OFF`` sampler (and no SDK self-metrics).

    Such a tracer's spans are never recorded, exported or sampled, in any context: skipping them
    changes no exported span, metric or recorded trace id. The one difference is inside the call:
    the ambient context carries no non-recording span, so nothing there can propagate a
    ``sampled=0`` trace context (the engine reads no OpenTelemetry context; see DESIGN.md rule 1).
    """
    # The SDK is not imported for this: a tracer can only be an SDK tracer once the SDK is loaded.
    sampling = sys.modules.get("opentelemetry.sdk.trace.sampling")
    if sampling is None or getattr(tracer, "sampler", None) is not sampling.ALWAYS_OFF:
        return False
    return os.environ.get(_INTERNAL_METRICS_ENV, "").strip().lower() != "true"


class Holder:
    """The binding currently in force (None when not instrumented); wrappers read it on every call."""

    __slots__ = ("binding",)

    def __init__(self) -> None:
        self.binding: Optional[Binding] = None


# The binding decorators use: set by ExecutionInstrumentor while instrumented.
ACTIVE = Holder()


@dataclass(frozen=True)
class EventSpec:
    """How one traced function is observed."""

    span_name: str
    record: Optional[Recorder] = None
    annotate: Optional[Annotator] = None


def make_wrapper(spec: EventSpec, holder: Holder) -> Callable:
    """A wrapt wrapper ``(wrapped, instance, args, kwargs)`` observing calls per ``spec``."""
    span_name = spec.span_name
    record = spec.record
    annotate = spec.annotate
    record_key = "record:" + span_name
    span_key = "span:" + span_name
    error_key = "span-error:" + span_name
    annotate_key = "annotate:" + span_name
    end_key = "end:" + span_name

    def wrapper(wrapped: Callable, instance: Any, args: tuple, kwargs: dict) -> Any:
        b = holder.binding
        if b is None:
            return wrapped(*args, **kwargs)
        ctx = current_context()
        if ctx.get(_SUPPRESS) or ctx.get(_SUPPRESS_PLAIN):  # suppress_instrumentation(): no span, count or stamp
            return wrapped(*args, **kwargs)
        tracer = b._span_tracer
        if tracer is None:  # metrics only (or a sampler that never samples): the cheap path
            if record is None:
                return wrapped(*args, **kwargs)
            result = _MISSING
            try:
                result = wrapped(*args, **kwargs)
                return result
            finally:
                try:
                    record(b, instance, args, kwargs, result, 0)
                except Exception:
                    _log.exception(record_key, "otel_diag: recording an event failed")
        try:
            span = tracer.start_span(span_name, ctx, kind=SpanKind.INTERNAL)
            token = otel_context.attach(trace.set_span_in_context(span, ctx))
        except Exception:
            _log.exception(span_key, "otel_diag: starting a span failed")
            return wrapped(*args, **kwargs)
        result = _MISSING
        try:
            result = wrapped(*args, **kwargs)
            return result
        except Exception as exc:  # as the API's use_span: Exceptions only, not SystemExit, KeyboardInterrupt, ...
            try:
                if span.is_recording():
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            except Exception:
                _log.exception(error_key, "otel_diag: recording an exception failed")
            raise
        finally:
            try:
                otel_context.detach(token)
                if record is not None:
                    span_context = span.get_span_context()
                    try:
                        record(b, instance, args, kwargs, result,
                               span_context.trace_id if span_context.trace_flags.sampled else 0)
                    except Exception:
                        _log.exception(record_key, "otel_diag: recording an event failed")
                if annotate is not None and span.is_recording():
                    annotate(span, instance, args, kwargs, result)
            except Exception:
                _log.exception(annotate_key, "otel_diag: span attributes failed")
            finally:
                try:
                    span.end()
                except Exception:
                    _log.exception(end_key, "otel_diag: ending a span failed")

    setattr(wrapper, _OURS, True)
    return wrapper


def _trampoline(original: Any, wrapper: Callable) -> Callable:
    bind = original.__get__

    def patched(instance: Any = _NO_INSTANCE, /, *args: Any, **kwargs: Any) -> Any:
        if instance is _NO_INSTANCE or instance is None:  # not a call on an instance: the original's own behaviour
            return original(*args, **kwargs) if instance is _NO_INSTANCE else original(None, *args, **kwargs)
        return wrapper(bind(instance), instance, args, kwargs)

    return patched


_PATCH_CODE = _trampoline(lambda instance: None, lambda *a: None).__code__  # every patch_function shares it


def patch_function(original: Any, wrapper: Callable) -> Any:
    """The class-level patch of a plain method: a function calling ``wrapper(bound, instance, args, kwargs)``.

    Used for plain synchronous functions on a class (every engine target); anything else
    (a ``classmethod``, a coroutine or generator function, a builtin) gets
    ``wrapt.wrap_function_wrapper`` (:func:`install_patch`). The one special case, and the figure
    that forces it: a ``FunctionWrapper`` on a class builds a ``BoundFunctionWrapper`` on every
    attribute access (``engine.risk.check`` → bind → call), which puts a metrics-only ``risk.check``
    that approves a signal over its budget of ≤ 1.0× prometheus_client with children bound once
    (docs/benchmarks.md times both patches against it in every run). The patch is a function like the one it replaces:
    same name, qualified name, module, docstring and ``__wrapped__`` (``inspect.signature``
    follows it), no per-instance state, so copying or pickling an engine object is unaffected.
    The wrapper sees the same ``(wrapped, instance, args, kwargs)`` as under wrapt, ``wrapped``
    being the original bound to the instance. The instance is taken positionally, so a keyword
    argument named like the method's first parameter still reaches the original; a call that is
    not on an instance (no argument, or ``None``) goes to the original unwrapped, with its own errors.
    """
    return functools.wraps(original)(_trampoline(original, wrapper))


def patchable_as_function(value: Any) -> bool:
    """Whether :func:`patch_function` applies to ``value``, a class's attribute: a plain synchronous function."""
    return (type(value) is types.FunctionType and not is_patch(value)
            and not (inspect.iscoroutinefunction(value) or inspect.isgeneratorfunction(value)
                     or inspect.isasyncgenfunction(value)))


def is_patch(value: Any) -> bool:
    """Whether ``value`` is an otel_diag patch: a :func:`patch_function`, or a wrapt proxy around a wrapper of ours.

    Recognised by what they are, not by an attribute a ``functools.wraps`` around them would copy:
    someone else's wrapper around (or under) ours is not taken for ours.
    """
    if isinstance(value, _PROXY):  # first: a proxy passes isinstance checks for what it wraps
        return getattr(getattr(value, "_self_wrapper", None), _OURS, False) is True
    return type(value) is types.FunctionType and value.__code__ is _PATCH_CODE


def held(owner: Any, attr: str) -> Any:
    """What ``owner`` itself holds at ``attr``: a class's own ``__dict__`` entry (None when inherited), else the attribute."""
    return owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)


def install_patch(owner: Any, attr: str, wrapper: Callable) -> bool:
    """Patch ``owner.attr`` with ``wrapper``: :func:`patch_function` for a plain method, else wrapt.

    Nothing happens when it is patched already (one layer, whatever the number of calls). True when it patched.
    """
    current = held(owner, attr)
    if is_patch(current):
        return False
    if isinstance(owner, type) and patchable_as_function(current):
        setattr(owner, attr, patch_function(current, wrapper))
    else:
        if not getattr(wrapper, _OURS, False):
            setattr(wrapper, _OURS, True)
        wrapt.wrap_function_wrapper(owner, attr, wrapper)
    return True


def remove_patch(owner: Any, attr: str) -> None:
    """Put back what :func:`install_patch` replaced (nothing happens when ``owner.attr`` is no patch of ours)."""
    current = held(owner, attr)
    if is_patch(current):
        setattr(owner, attr, current.__wrapped__)


def traced_event(span_name: str, *, event: Optional[str] = None, counter: Optional[str] = None,
                 attributes: Optional[Callable[..., Dict[str, Any]]] = None) -> Callable:
    """Decorate a function so each call is a span named ``span_name`` plus an event.

    ``event`` (one of :data:`otel_diag.semconv.EVENTS`) is stamped with the clock's time on
    every call; ``counter`` (a ``trading.*`` counter name) is incremented by one;
    ``attributes(*args, **kwargs)`` may return span attributes (called only when recording).
    The decorated function keeps its name, docstring and signature; with otel_diag not
    configured it is a plain call.
    """

    def record(b: Binding, instance: Any, args: tuple, kwargs: dict, result: Any, trace_id: int) -> None:
        series = b.family(counter).get() if counter else None
        b.state.hit(series, event, trace_id)

    def annotate(span: Any, instance: Any, args: tuple, kwargs: dict, result: Any) -> None:
        attrs = attributes(*args, **kwargs) if attributes is not None else None
        if attrs:
            span.set_attributes(attrs)

    spec = EventSpec(span_name, record if (event or counter) else None, annotate if attributes else None)
    return wrapt.decorator(make_wrapper(spec, ACTIVE))
