"""otel_diag: OpenTelemetry runtime diagnostics for the execution engine.

Usage::

    import otel_diag

    telemetry = otel_diag.configure(clock=clock)     # providers, diagnostics reader, engine patched
    ...run the engine...
    telemetry.snapshot().last_event_times            # {"signal": 1767571260.0, ...}
    otel_diag.shutdown()

    @otel_diag.traced_event("my.router.send", event="router", counter=otel_diag.semconv.METRIC_ROUTER_EVENTS)
    def send(order): ...

Spans go to any span processor you pass (or OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set);
metrics are observable instruments read by the in-process :class:`DiagnosticsMetricReader`,
by OTLP and by a Prometheus endpoint alike.

Importing the package loads nothing heavy: each name below is imported on first use (PEP 562), so
the tools that need only a leaf module — ``otel-diag status``, the risk panel's ``otel_diag.redact`` —
do not pay for the OpenTelemetry SDK (≈ 0.4 s, docs/benchmarks.md). ``import otel_diag`` followed by
``otel_diag.configure(...)`` or ``from otel_diag import configure`` work as before.
"""
from __future__ import annotations

import importlib
from typing import Any, Dict, List

# name -> the module that defines it (a module name maps to itself)
_EXPORTS: Dict[str, str] = {
    "semconv": "otel_diag.semconv",
    "ExecutionInstrumentor": "otel_diag.instrumentor",
    "DerivedMetrics": "otel_diag.reader",
    "DiagnosticsMetricReader": "otel_diag.reader",
    "RateLimitedLog": "otel_diag._log",
    "Telemetry": "otel_diag.sdk",
    "configure": "otel_diag.sdk",
    "current": "otel_diag.sdk",
    "shutdown": "otel_diag.sdk",
    "__version__": "otel_diag.version",
    "traced_event": "otel_diag.wrappers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_diag' has no attribute {name!r}")
    loaded = importlib.import_module(module)
    value = loaded if module.rpartition(".")[2] == name else getattr(loaded, name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_EXPORTS))
