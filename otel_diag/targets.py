"""Patch tables: which function of an engine is which traced event. A table is user data, not otel_diag code.

Usage — a Python table in your own package::

    from otel_diag.targets import target

    TARGETS = (
        target("mybot.strategy:Strategy.decide", "signal", symbol="mybot.otel:symbol_of", when="mybot.otel:has_result"),
        target("mybot.risk:Risk.check", "risk_check", symbol="mybot.otel:symbol_of", reason="mybot.otel:veto_reason"),
        target("mybot.broker:Broker.submit", "order", symbol="mybot.otel:symbol_of", router_event="route"),
        target("mybot.broker:Broker.on_fill", "router", router_event="fill"),
        target("mybot.exits:Exits.scan", "exit_scan", coverage="mybot.otel:coverage"),
        target("mybot.exits:Exits.close", "exit_trigger", reason="mybot.otel:exit_reason"),
        target("mybot.loop:Loop.on_bars", "market_data", prices="mybot.otel:closes"),
    )

    otel_diag.configure(targets=TARGETS)            # or targets="mybot.otel:TARGETS", or a .toml/.json file
    # OTEL_DIAG_TARGETS=mybot.otel:TARGETS python -m mybot    (also under opentelemetry-instrument)

or the same rows as a TOML (or JSON) file, ``[[targets]]`` tables with the keyword names below plus
``function``. docs/instrument_your_own_engine.md is the user's guide.

Each row names a function (``module:Qualified.name``), the event its calls are (:data:`EVENTS`), the span
name (default: the qualified name) and adapters. An adapter is a plain function, or its
``module:function`` reference, called with one :class:`Call` (the call's instance, arguments and
result). ``reason`` and ``router_event`` may also be a literal string (one with no ``:``).

- ``symbol(call)``: the instrument's symbol (None: the series has no symbol).
- ``when(call)``: false → this call records nothing and its span carries none of the event's attributes (the
  span is still made, with what ``attributes`` returns).
- ``reason(call)``: a ``risk_check``'s veto reason (None: approved), a ``veto``'s reason, an ``exit_trigger``'s reason.
- ``router_event(call)``: a ``router`` row's event (``route`` by default, ``twap_slice``, ``fill``, ``reject``;
  None: not counted); on an ``order`` row it also counts that router event.
- ``prices(call)``: on a ``market_data`` row (a call that receives every symbol's bar once a cycle), the
  cycle's ``{symbol: price}``: each symbol's last bar and last price change are stamped for the per-symbol
  freshness checks (docs/v7.6_Runtime_Diagnostics.md). Only the symbols it returns are stamped.
- ``coverage(call)``: on an ``exit_scan`` row, the exit pipeline as ``(open keys, protected keys, underwater
  keys)`` of (symbol, side) pairs (:func:`otel_diag.state.coverage_gauges` defines what follows from them).
- ``attributes(call)``: extra span attributes (a dict), only when the span records.

A row that cannot be used — an unknown event, an adapter that does not resolve, a function that does not
exist — is one warning naming it (:class:`TargetError`'s message), and every other row still instruments.
The engine otel_diag ships with is only the default table (:mod:`otel_diag.default_targets`).
"""
from __future__ import annotations

import importlib
import json
import os
import re
import stat
from typing import Any, Callable, Iterable, NamedTuple, Optional, Tuple, Union

from otel_diag import semconv as sc
from otel_diag.state import coverage_gauges
from otel_diag.wrappers import _MISSING, Binding, EventSpec

TARGETS_ENV = "OTEL_DIAG_TARGETS"  # module:TABLE, or a .toml / .json file
DEFAULT_TABLE = "otel_diag.default_targets:TARGETS"

# The events a row may declare: the last-event kinds of semconv, the risk check (a signal and maybe its
# veto), a cycle's market data (per-symbol prices), and "span" (a span and nothing counted).
EVENT_RISK_CHECK = "risk_check"
EVENT_MARKET_DATA = "market_data"
EVENT_SPAN = "span"
EVENTS = (sc.EVENT_SIGNAL, EVENT_RISK_CHECK, sc.EVENT_VETO, sc.EVENT_ORDER, sc.EVENT_ROUTER, sc.EVENT_EXIT_SCAN,
          sc.EVENT_EXIT_TRIGGER, EVENT_MARKET_DATA, EVENT_SPAN)
ADAPTERS = ("symbol", "when", "reason", "router_event", "coverage", "attributes", "prices")
_LITERAL_ALLOWED = ("reason", "router_event")
ROW_KEYS = ("function", "event", "span") + ADAPTERS
_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class TargetError(ValueError):
    """A row or table that cannot be used; the message names it and says what is wrong, on one line."""


class Declared(NamedTuple):
    """A row as the user wrote it: compiled into an :class:`EventSpec` when instrumenting (:func:`compile_target`)."""

    event: Optional[str]
    span: Optional[str]
    symbol: Any = None
    when: Any = None
    reason: Any = None
    router_event: Any = None
    coverage: Any = None
    attributes: Any = None
    prices: Any = None


class Target(NamedTuple):
    """One row: the function ``module``.``name`` and how its calls are observed (an EventSpec, or Declared)."""

    module: str
    name: str
    spec: Union[EventSpec, Declared]

    @property
    def function(self) -> str:
        return f"{self.module}:{self.name}"


class Call:
    """One call, as adapters see it: ``instance`` (None for a plain function), ``args``, ``kwargs``, ``result``.

    ``result`` is None and ``raised`` True when the call raised.
    """

    __slots__ = ("instance", "args", "kwargs", "result", "raised")

    def __init__(self, instance: Any, args: tuple, kwargs: dict, result: Any) -> None:
        self.instance = instance
        self.args = args
        self.kwargs = kwargs
        self.raised = result is _MISSING
        self.result = None if self.raised else result

    def arg(self, index: int, name: str, default: Any = None) -> Any:
        """The argument at position ``index`` (not counting the instance), else the keyword ``name``."""
        return self.args[index] if len(self.args) > index else self.kwargs.get(name, default)


def target(function: str, event: Optional[str] = None, *, span: Optional[str] = None, symbol: Any = None,
           when: Any = None, reason: Any = None, router_event: Any = None, coverage: Any = None,
           attributes: Any = None, prices: Any = None) -> Target:
    """A declarative row: ``function`` (``module:Qualified.name``) is ``event``; checked when instrumenting."""
    module, _, name = str(function).partition(":")
    return Target(module, name, Declared(event, span, symbol, when, reason, router_event, coverage, attributes, prices))


def resolve(reference: str) -> Any:
    """The object a ``module:attr.path`` reference names; :class:`TargetError` when it does not exist."""
    if not isinstance(reference, str) or not _REFERENCE.match(reference):
        raise TargetError(f"{reference!r} is not a module:name reference")
    module_name, _, path = reference.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise TargetError(f"{reference}: cannot import {module_name} ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # the module itself failed while importing
        raise TargetError(f"{reference}: importing {module_name} failed ({type(exc).__name__}: {exc})") from None
    for part in path.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise TargetError(f"{reference}: {module_name} has no {path}") from None
    return found


def _adapter(row: str, field: str, value: Any) -> Optional[Callable[[Call], Any]]:
    if value is None or callable(value):
        return value
    if isinstance(value, str) and field in _LITERAL_ALLOWED and ":" not in value:
        return lambda call, literal=value: literal
    try:
        found = resolve(value)
    except TargetError as exc:
        raise TargetError(f"{row}: {field}: {exc}") from None
    if not callable(found):
        raise TargetError(f"{row}: {field}: {value} is not callable")
    return found


# -- what each event records ---------------------------------------------------------------------------
def _keyed(family: Any, key: Any) -> Any:
    """The series of ``key`` in ``family``; with no key, the metric's series without attributes (``()``)."""
    return family[() if key is None else key]


def _veto(b: Binding, reason: Any, symbol: Any) -> Any:
    """The veto series of ``reason`` and ``symbol`` (by reason alone when there is no symbol)."""
    return b.vetoes[(reason, symbol) if symbol is not None else (reason,)]


def _recorder(event: str, symbol, when, reason, router_event, coverage, prices) -> Optional[Callable]:
    sym = symbol or (lambda call: None)

    if event == sc.EVENT_SIGNAL:
        def count(b: Binding, call: Call, trace_id: int) -> None:
            b.state.hit(_keyed(b.signals, sym(call)), sc.EVENT_SIGNAL, trace_id)
    elif event == EVENT_RISK_CHECK:
        def count(b: Binding, call: Call, trace_id: int) -> None:
            s = sym(call)
            signal = _keyed(b.signals, s)
            why = None if call.raised or reason is None else reason(call)
            if why is None:
                b.state.hit(signal, sc.EVENT_SIGNAL, trace_id)
            else:
                b.state.hit2(signal, sc.EVENT_SIGNAL, _veto(b, why, s), sc.EVENT_VETO, trace_id)
    elif event == sc.EVENT_VETO:
        def count(b: Binding, call: Call, trace_id: int) -> None:
            why, s = reason(call), sym(call)
            if why is not None:
                b.state.hit(_veto(b, why, s), sc.EVENT_VETO, trace_id)
    elif event == sc.EVENT_ORDER:
        def count(b: Binding, call: Call, trace_id: int) -> None:
            order = _keyed(b.orders, sym(call))
            routed = router_event(call) if router_event is not None else None
            if routed is None:
                b.state.hit(order, sc.EVENT_ORDER, trace_id)
            else:
                b.state.hit2(order, sc.EVENT_ORDER, b.router[routed], sc.EVENT_ROUTER, trace_id)
    elif event == sc.EVENT_ROUTER:
        def count(b: Binding, call: Call, trace_id: int) -> None:
            routed = router_event(call)
            if routed is not None:
                b.state.hit(b.router[routed], sc.EVENT_ROUTER, trace_id)
    elif event == sc.EVENT_EXIT_SCAN:
        def count(b: Binding, call: Call, trace_id: int) -> None:
            b.state.hit(b.exit_scans[()], sc.EVENT_EXIT_SCAN, trace_id)
            if coverage is not None and not call.raised:
                found = coverage(call)
                if found is not None:  # copied now (the engine's state moves on), derived at collection
                    open_keys, protected, underwater = found
                    b.state.set_exit_source(_gauges, (tuple(open_keys), tuple(protected), tuple(underwater)))
    elif event == sc.EVENT_EXIT_TRIGGER:
        def count(b: Binding, call: Call, trace_id: int) -> None:
            why = reason(call) if reason is not None else None
            series = _keyed(b.exit_triggers, why)
            b.state.hit(series, sc.EVENT_EXIT_TRIGGER, trace_id)
    elif event == EVENT_MARKET_DATA:
        def count(b: Binding, call: Call, trace_id: int) -> None:
            found = prices(call)
            if found:
                b.state.stamp_prices(found if isinstance(found, dict) else dict(found))
    else:  # a span and nothing counted
        return None

    def record(b: Binding, instance: Any, args: tuple, kwargs: dict, result: Any, trace_id: int) -> None:
        call = Call(instance, args, kwargs, result)
        if when is None or when(call):
            count(b, call, trace_id)

    return record


def _gauges(keys: Tuple[tuple, tuple, tuple]):
    return coverage_gauges(*keys)


def _annotator(event: str, symbol, when, reason, router_event, attributes) -> Optional[Callable]:
    reason_attr = {EVENT_RISK_CHECK: sc.ATTR_VETO_REASON, sc.EVENT_VETO: sc.ATTR_VETO_REASON,
                   sc.EVENT_EXIT_TRIGGER: sc.ATTR_EXIT_REASON}.get(event)
    reads = [(sc.ATTR_SYMBOL, symbol), (reason_attr, reason if reason_attr else None),
             (sc.ATTR_ROUTER_EVENT, router_event if event in (sc.EVENT_ORDER, sc.EVENT_ROUTER) else None)]
    reads = [(name, read) for name, read in reads if read is not None]
    if not reads and attributes is None:
        return None

    def annotate(span: Any, instance: Any, args: tuple, kwargs: dict, result: Any) -> None:
        call = Call(instance, args, kwargs, result)
        found = {}
        if when is None or when(call):  # a call that is no event carries none of the event's attributes
            found = {name: value for name, value in ((name, read(call)) for name, read in reads) if value is not None}
        if attributes is not None:
            found.update(attributes(call) or {})
        if found:
            span.set_attributes(found)

    return annotate


def compile_target(row: Target) -> EventSpec:
    """The EventSpec a row is instrumented with; :class:`TargetError` (naming the row) when it cannot be used."""
    if isinstance(row.spec, EventSpec):
        return row.spec
    where = row.function
    if not row.module or not row.name or not _REFERENCE.match(where):
        raise TargetError(f"target {where!r}: function must be module:Qualified.name")
    d = row.spec
    if d.event not in EVENTS:
        raise TargetError(f"target {where}: event {d.event!r} is not one of {', '.join(EVENTS)}")
    symbol, when, reason, router_event, coverage, attributes, prices = (
        _adapter(f"target {where}", field, getattr(d, field)) for field in ADAPTERS)
    if d.event == sc.EVENT_VETO and reason is None:
        raise TargetError(f"target {where}: a veto needs a reason")
    if coverage is not None and d.event != sc.EVENT_EXIT_SCAN:
        raise TargetError(f"target {where}: coverage belongs on an exit_scan row")
    if (prices is not None) != (d.event == EVENT_MARKET_DATA):
        raise TargetError(f"target {where}: " + ("a market_data row needs prices" if prices is None
                                                 else "prices belongs on a market_data row"))
    if d.event == sc.EVENT_ROUTER and router_event is None:
        router_event = _adapter(f"target {where}", "router_event", sc.ROUTER_ROUTE)
    return EventSpec(d.span or row.name, _recorder(d.event, symbol, when, reason, router_event, coverage, prices),
                     _annotator(d.event, symbol, when, reason, router_event, attributes))


# -- loading a table -----------------------------------------------------------------------------------
def _row(item: Any, where: str) -> Target:
    if isinstance(item, Target):
        return item
    if not isinstance(item, dict):
        raise TargetError(f"{where}: a row is a table of {', '.join(ROW_KEYS)}, not {type(item).__name__}")
    unknown = sorted(set(item) - set(ROW_KEYS))
    if unknown:
        raise TargetError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(ROW_KEYS)})")
    if not isinstance(item.get("function"), str):
        raise TargetError(f"{where}: function (module:Qualified.name) is required")
    return target(**item)


def _rows(items: Any, source: str) -> Tuple[Target, ...]:
    if isinstance(items, dict):
        items = items.get("targets")
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TargetError(f"{source}: a table is a list of rows (a [[targets]] array in a file)")
    return tuple(_row(item, f"{source} row {n}") for n, item in enumerate(items, 1))


def _read_file(path: str) -> Any:
    """The file's table; a FIFO, device or folder is refused before any read (opened non-blocking, a FIFO
    with no writer would otherwise hang the start-up)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise TargetError(f"{path}: not a regular file")
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(1024 * 1024 + 1)
    except OSError as exc:
        raise TargetError(f"{path}: {exc.strerror or exc}") from None
    if len(data) > 1024 * 1024:
        raise TargetError(f"{path}: larger than 1 MiB, not a table of targets")
    try:
        if path.endswith(".toml"):
            import tomllib

            return tomllib.loads(data.decode("utf-8"))
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise TargetError(f"{path}: not valid {'TOML' if path.endswith('.toml') else 'JSON'} ({exc})") from None


def load_targets(source: Any = None) -> Tuple[Target, ...]:
    """The table ``source`` names: None → the default table; a ``module:TABLE`` reference; a ``.toml`` or
    ``.json`` file; or the rows themselves (Targets or dicts). :class:`TargetError` when it cannot be loaded."""
    if source is None:
        source = DEFAULT_TABLE
    if isinstance(source, str):
        text = source.strip()
        if text.endswith((".toml", ".json")) or os.sep in text:
            return _rows(_read_file(text), text)
        return _rows(resolve(text), text)
    return _rows(source, "targets")


def table_source(explicit: Any, env: Any) -> Any:
    """What to load: ``explicit`` (``targets=``) when given, else ``OTEL_DIAG_TARGETS`` from ``env``, else the default."""
    if explicit is not None:
        return explicit
    value = (env.get(TARGETS_ENV) or "").strip() if env is not None else ""
    return value or None


__all__ = ["Call", "Declared", "DEFAULT_TABLE", "EVENTS", "Target", "TargetError", "TARGETS_ENV", "compile_target",
           "load_targets", "resolve", "table_source", "target"]
