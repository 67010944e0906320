"""``ExecutionInstrumentor``: patches an engine, from a table of targets, with the wrappers of :mod:`otel_diag.wrappers`.

Usage::

    from otel_diag.instrumentor import ExecutionInstrumentor

    ExecutionInstrumentor().instrument(tracer_provider=tp, meter_provider=mp, clock=clock)   # the default table
    ExecutionInstrumentor(targets="mybot.otel:TARGETS").instrument(clock=clock)              # your engine's table
    ...
    ExecutionInstrumentor().uninstrument()      # the engine's functions are the originals again

The table (:mod:`otel_diag.targets`) is ``instrument(targets=…)``, else the one given to the constructor,
else ``OTEL_DIAG_TARGETS``, else :mod:`otel_diag.default_targets`. A row that cannot be used (an
unknown event, an adapter or a function that does not exist) is one warning naming it; the others
still instrument.

The patches are installed by wrapt post-import hooks, so an engine module is patched when
it is imported, whatever the import order; each is ``otel_diag.wrappers.install_patch``: a
plain method gets a function of the same name and signature (bound by Python like the
original, nothing stored on instances), anything else a ``wrapt.FunctionWrapper``.
``opentelemetry-instrument python -m execution`` finds this class through the
``opentelemetry_instrumentor`` entry point.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import time
import weakref
from typing import Any, Collection, Dict, List, Optional, Tuple

import wrapt
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from otel_diag import semconv as sc
from otel_diag.instruments import StateCell, register_instruments
from otel_diag.package import _instruments
from otel_diag.state import EventState
from otel_diag.targets import Target, TargetError, compile_target, load_targets, table_source
from otel_diag.version import __version__
from otel_diag.wrappers import ACTIVE, Binding, EventSpec, held, install_patch, is_patch, make_wrapper, remove_patch

_logger = logging.getLogger(__name__)

# One StateCell per MeterProvider: instruments are created once per provider (the SDK keeps the
# first instrument of a name), and re-instrumenting only points the cell at the new state.
_CELLS: "weakref.WeakKeyDictionary[Any, StateCell]" = weakref.WeakKeyDictionary()


def cell_for(meter_provider: Any) -> StateCell:
    """The StateCell whose instruments report on ``meter_provider`` (registered on first use)."""
    try:
        cell = _CELLS.get(meter_provider)
    except TypeError:  # not weak-referenceable: register every time
        cell = None
    if cell is None:
        cell = StateCell()
        register_instruments(meter_provider.get_meter(sc.INSTRUMENTATION_NAME, __version__, schema_url=sc.SCHEMA_URL),
                             cell)
        try:
            _CELLS[meter_provider] = cell
        except TypeError:
            pass
    return cell


def _warn(problem: str) -> None:
    _logger.warning("otel_diag: %s; the other targets still instrument", problem)


def usable_rows(rows: Tuple[Target, ...]) -> List[Tuple[Target, EventSpec]]:
    """Each row with its EventSpec, the unusable ones left out with one warning each (the module is imported
    only when it exists: a typo in its name is found now, not never)."""
    usable: List[Tuple[Target, EventSpec]] = []
    named = set()
    for row in rows:
        try:
            if row.function in named:
                raise TargetError(f"target {row.function}: named by an earlier row too (a function has one patch: "
                                  "the first row's events are recorded)")
            spec = compile_target(row)
            if row.module not in sys.modules and importlib.util.find_spec(row.module) is None:
                raise TargetError(f"target {row.function}: no module named {row.module}")
        except TargetError as exc:
            _warn(str(exc))
            continue
        except Exception as exc:  # find_spec imports the parent packages, which may fail on their own
            _warn(f"target {row.function}: {type(exc).__name__}: {exc}")
            continue
        usable.append((row, spec))
        named.add(row.function)
    return usable


def worth_patching(spec: EventSpec, binding: Binding) -> bool:
    """Whether a target is patched under ``binding``: a span-only one only when spans are ever made.

    With no span ever made (tracing off, or a sampler that never samples) its wrapper would only cost time.
    """
    return spec.record is not None or binding._span_tracer is not None


def _owner(module: Any, qualname: str) -> Tuple[Any, str]:
    """(what holds ``qualname``'s last part, that part) in ``module``; AttributeError when any part is missing."""
    *path, attr = qualname.split(".")
    owner = module
    for part in path:
        owner = getattr(owner, part)
    if not hasattr(owner, attr):
        raise AttributeError(attr)
    return owner, attr


class ExecutionInstrumentor(BaseInstrumentor):
    """Spans and metrics for an engine's signal, risk, router, exchange and exit-scanner calls."""

    _targets: Any = None  # the constructor's table (a singleton: BaseInstrumentor() is always the same object)
    table: Tuple[Target, ...] = ()  # the rows of the last instrument()

    def __init__(self, *, targets: Any = None) -> None:
        if targets is not None:
            ExecutionInstrumentor._targets = targets

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        tracer_provider = kwargs.get("tracer_provider")
        meter_providers = list(kwargs.get("meter_providers") or [kwargs.get("meter_provider") or metrics.get_meter_provider()])
        clock = kwargs.get("clock") or time.time
        state: EventState = kwargs.get("event_state") or EventState(clock)
        tracer: Optional[trace.Tracer] = None
        if kwargs.get("tracing", True):
            tracer = trace.get_tracer(sc.INSTRUMENTATION_NAME, __version__, tracer_provider, schema_url=sc.SCHEMA_URL)
        for provider in meter_providers:
            cell_for(provider).state = state
        self.binding = Binding(state, tracer)
        self._generation = getattr(self, "_generation", 0) + 1
        self._wrapped: List[Tuple[Any, str]] = []
        ACTIVE.binding = self.binding
        generation = self._generation
        explicit = kwargs.get("targets")
        source = table_source(self._targets if explicit is None else explicit, os.environ)
        try:
            rows = load_targets(source)
        except TargetError as exc:
            _logger.warning("otel_diag: %s; nothing is instrumented", exc)
            rows = ()
        ExecutionInstrumentor.table = rows
        for target, spec in usable_rows(rows):
            if worth_patching(spec, self.binding):
                wrapt.register_post_import_hook(self._hook(target, spec, generation), target.module)

    def _hook(self, target: Target, spec: EventSpec, generation: int):
        def patch(module: Any) -> None:
            if generation != self._generation:  # a hook of an earlier instrument(): uninstrumented since
                return
            try:
                owner, attr = _owner(module, target.name)
            except AttributeError:
                _warn(f"target {target.function}: {target.module} has no {target.name}")
                return
            try:
                if install_patch(owner, attr, make_wrapper(spec, ACTIVE)):  # False: patched already
                    self._wrapped.append((owner, attr))
            except Exception as exc:
                _warn(f"target {target.function}: could not patch it ({type(exc).__name__}: {exc})")

        return patch

    def _uninstrument(self, **kwargs: Any) -> None:
        # The engine's functions are the originals again. The instruments keep reporting what was counted
        # (as a contrib instrumentation's counters keep their totals): a reader collecting after this,
        # such as a host's final export at exit, still sees the run's counts.
        self._generation += 1
        ACTIVE.binding = None
        for owner, attr in reversed(self._wrapped):
            remove_patch(owner, attr)
        self._wrapped = []

    @staticmethod
    def patched() -> List[str]:
        """``module.Qualified.name`` of every function of the table in use (the default before any
        ``instrument()``) currently wrapped (for checks and tests)."""
        rows = ExecutionInstrumentor.table or load_targets()
        return [name for name, held in target_functions(rows).items() if is_patch(held)]


def target_functions(rows: Optional[Tuple[Target, ...]] = None) -> Dict[str, Any]:
    """What each target's owner holds now, by ``module.Qualified.name`` (imported modules and existing names
    only); ``rows`` defaults to the default table."""
    found: Dict[str, Any] = {}
    for target in rows if rows is not None else load_targets():
        module = sys.modules.get(target.module)
        if module is not None:
            try:
                owner, attr = _owner(module, target.name)
            except AttributeError:
                continue
            found[f"{target.module}.{target.name}"] = held(owner, attr)
    return found


def bind_instruments(meter_providers: List[Any], state: Optional[EventState]) -> None:
    """Report ``state`` through the instruments of ``meter_providers`` without patching anything (None: nothing)."""
    for provider in meter_providers:
        cell_for(provider).state = state


def import_engine() -> None:
    """Import every engine module of the default table (patches them when instrumented)."""
    for module in sorted({t.module for t in load_targets()}):
        importlib.import_module(module)
