"""``ExecutionInstrumentor``: patches the paper engine with the wrappers of :mod:`otel_diag.wrappers`.

Usage::

    from otel_diag.instrumentor import ExecutionInstrumentor

    ExecutionInstrumentor().instrument(tracer_provider=tp, meter_provider=mp, clock=clock)
    ...
    ExecutionInstrumentor().uninstrument()      # the engine's functions are the originals again

The patches are installed by wrapt post-import hooks, so an engine module is patched when
it is imported, whatever the import order; each is ``otel_diag.wrappers.install_patch``: a
plain method gets a function of the same name and signature (bound by Python like the
original, nothing stored on instances), anything else a ``wrapt.FunctionWrapper``.
``opentelemetry-instrument python -m execution`` finds this class through the
``opentelemetry_instrumentor`` entry point.
"""
from __future__ import annotations

import importlib
import logging
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
from otel_diag.targets import TARGETS, Target
from otel_diag.version import __version__
from otel_diag.wrappers import ACTIVE, Binding, EventSpec, install_patch, is_patch, make_wrapper, remove_patch

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


def worth_patching(spec: EventSpec, binding: Binding) -> bool:
    """Whether a target is patched under ``binding``: a span-only one only when spans are ever made.

    With no span ever made (tracing off, or a sampler that never samples) its wrapper would only cost time.
    """
    return spec.record is not None or binding._span_tracer is not None


def _owner(module: Any, qualname: str) -> Tuple[Any, str]:
    *path, attr = qualname.split(".")
    owner = module
    for part in path:
        owner = getattr(owner, part)
    return owner, attr


class ExecutionInstrumentor(BaseInstrumentor):
    """Spans and metrics for the engine's signal, risk, router, exchange and exit-scanner calls."""

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
        for target in TARGETS:
            if not worth_patching(target.spec, self.binding):
                continue
            wrapt.register_post_import_hook(self._hook(target, generation), target.module)

    def _hook(self, target: Target, generation: int):
        def patch(module: Any) -> None:
            if generation != self._generation:  # a hook of an earlier instrument(): uninstrumented since
                return
            try:
                owner, attr = _owner(module, target.name)
                current = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)
                if is_patch(current):
                    return  # already patched
                install_patch(owner, attr, make_wrapper(target.spec, ACTIVE))
                self._wrapped.append((owner, attr))
            except Exception:
                _logger.warning("otel_diag: could not patch %s.%s", target.module, target.name, exc_info=True)

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
        """``module.Qualified.name`` of every engine function currently wrapped (for checks and tests)."""
        return [name for name, held in target_functions().items() if is_patch(held)]


def target_functions() -> Dict[str, Any]:
    """What each patch-table target's owner holds now, by ``module.Qualified.name`` (imported modules only)."""
    found: Dict[str, Any] = {}
    for target in TARGETS:
        module = sys.modules.get(target.module)
        if module is not None:
            owner, attr = _owner(module, target.name)
            found[f"{target.module}.{target.name}"] = owner.__dict__.get(attr) if isinstance(owner, type) \
                else getattr(owner, attr, None)
    return found


def bind_instruments(meter_providers: List[Any], state: Optional[EventState]) -> None:
    """Report ``state`` through the instruments of ``meter_providers`` without patching anything (None: nothing)."""
    for provider in meter_providers:
        cell_for(provider).state = state


def import_engine() -> None:
    """Import every engine module of the patch table (patches them when instrumented)."""
    for module in sorted({t.module for t in TARGETS}):
        importlib.import_module(module)
