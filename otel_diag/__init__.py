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
"""
from otel_diag import semconv
from otel_diag.instrumentor import ExecutionInstrumentor
from otel_diag.reader import DerivedMetrics, DiagnosticsMetricReader
from otel_diag._log import RateLimitedLog
from otel_diag.sdk import Telemetry, configure, current, shutdown
from otel_diag.version import __version__
from otel_diag.wrappers import traced_event

__all__ = [
    "DerivedMetrics", "DiagnosticsMetricReader", "ExecutionInstrumentor", "RateLimitedLog", "Telemetry", "configure",
    "current", "semconv", "shutdown", "traced_event", "__version__",
]
