"""Every private OpenTelemetry internal otel_diag relies on, in one place.

Each is used because no public API gives it, and each has a test in
``tests/unit/otel_diag/test_internals.py`` that fails loudly when an upgrade changes it
(the fallbacks here keep the product working meanwhile, the test says what moved):

- ``SDK_CARDINALITY_LIMIT``: the SDK's default cardinality limit (a metric's attribute sets per reader).
  The diagnostics snapshot applies the same limit to the observations it derives from, so it equals
  an SDK collection (docs/benchmarks.md: the snapshot at 100 symbols × 20 reasons without an SDK collect).
- :func:`meter_provider_resource`: a MeterProvider's resource. A ``TracerProvider`` has a public
  ``resource``; a MeterProvider does not. Needed only when a host configured a MeterProvider and no
  TracerProvider: the diagnostics document then names the service as the host's metrics do.
- ``SUPPRESS_KEYS`` and :func:`current_context`: the wrappers answer what the public
  ``is_instrumentation_enabled()`` answers (no ``suppress_instrumentation()`` in force) from one read
  of the current context — which they then reuse as the new span's parent — instead of the public
  function's four calls and two reads. Every wrapped call asks it first; with the public function,
  metrics-only ``risk.check`` missed its budget of ≤ 1.0× prometheus_client with children bound
  once (docs/benchmarks.md times both checks).
- :func:`prometheus_metric_name` / :func:`prometheus_label`: how the Prometheus exporter spells an OTel
  metric and attribute name (``otel-diag rules`` writes alert expressions in those names). Loaded on
  first use, so the instrumentation never imports the Prometheus exporter.
"""
from __future__ import annotations

import contextvars
from typing import Any, Callable, Optional

from opentelemetry import context as _context

SPEC_CARDINALITY_LIMIT = 2000  # the specification's default, should the SDK stop naming its own


def __getattr__(name: str) -> Any:
    """``SDK_CARDINALITY_LIMIT``, read from the SDK on first use: the wrappers import this module, and
    importing the instrumentation must not load the SDK (a host may not use it)."""
    if name != "SDK_CARDINALITY_LIMIT":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        from opentelemetry.sdk.metrics._internal._view_instrument_match import _DEFAULT_CARDINALITY_LIMIT as limit
    except ImportError:  # pragma: no cover - another SDK layout (the test fails on it)
        limit = SPEC_CARDINALITY_LIMIT
    globals()[name] = limit
    return limit


try:
    from opentelemetry.instrumentation.utils import _SUPPRESS_INSTRUMENTATION_KEY_PLAIN
except ImportError:  # pragma: no cover - another layout (the test fails on it)
    _SUPPRESS_INSTRUMENTATION_KEY_PLAIN = "suppress_instrumentation"

# The context keys suppress_instrumentation() sets and is_instrumentation_enabled() reads.
SUPPRESS_KEYS = (_context._SUPPRESS_INSTRUMENTATION_KEY, _SUPPRESS_INSTRUMENTATION_KEY_PLAIN)


def _current_context_reader() -> Callable[[], Any]:
    """The current Context, read straight from the runtime context's ContextVar when it has one."""
    var = getattr(_context._RUNTIME_CONTEXT, "_current_context", None)
    return var.get if isinstance(var, contextvars.ContextVar) else _context.get_current


# The current Context (what opentelemetry.context.get_current() returns), at the cost of one C call.
current_context = _current_context_reader()


def meter_provider_resource(meter_provider: Any) -> Optional[Any]:
    """The Resource an SDK ``MeterProvider`` exports with; None when this SDK keeps it elsewhere."""
    config = getattr(meter_provider, "_sdk_config", None)
    return getattr(config, "resource", None)


def prometheus_metric_name(name: str, unit: str, *, counter: bool) -> str:
    """The name the Prometheus exporter gives an OTel metric ``name`` with ``unit`` (``_total`` for a counter)."""
    from opentelemetry.exporter.prometheus._mapping import map_unit, sanitize_full_name

    full = sanitize_full_name(name)
    suffix = map_unit(unit)
    if counter and full.endswith("_total"):
        full = full[: -len("_total")]
    if suffix and not full.endswith("_" + suffix):
        full = f"{full}_{suffix}"
    return f"{full}_total" if counter else full


def prometheus_label(name: str) -> str:
    """The label name the Prometheus exporter gives an OTel attribute ``name``."""
    from opentelemetry.exporter.prometheus._mapping import sanitize_attribute

    return sanitize_attribute(name)
