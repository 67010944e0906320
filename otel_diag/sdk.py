"""``configure()`` and ``shutdown()``: the providers, readers and exporters of one executor process.

Usage::

    import otel_diag

    telemetry = otel_diag.configure(clock=clock, service_name="executor")   # patches the engine
    ...
    derived = telemetry.snapshot()      # what the trading.* instruments report now
    otel_diag.shutdown()                # flushes within a bounded time, restores the engine

The OTel environment variables are honoured: ``OTEL_SDK_DISABLED``; ``OTEL_EXPORTER_OTLP_ENDPOINT``
(and the per-signal ``…_TRACES_ENDPOINT`` / ``…_METRICS_ENDPOINT``), ``OTEL_EXPORTER_OTLP_PROTOCOL``
(``http/protobuf`` default, or ``grpc``), ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER``
(``otlp``, ``console``, ``prometheus``, ``none``), ``OTEL_TRACES_SAMPLER``, ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_METRIC_EXPORT_INTERVAL``, ``OTEL_EXPORTER_PROMETHEUS_HOST/PORT``.
With no endpoint configured nothing is exported and tracing is off (metrics stay in-process).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_diag import semconv as sc
from otel_diag.instrumentor import ExecutionInstrumentor, bind_instruments, cell_for, unbind_instruments
from otel_diag.reader import DerivedMetrics, DiagnosticsMetricReader
from otel_diag.state import DEFAULT_MAX_SERIES_PER_METRIC, EventState

_logger = logging.getLogger("otel_diag")

DEFAULT_SHUTDOWN_TIMEOUT_MILLIS = 5_000
# Seconds one OTLP export request may take (the SDK's default is 10). No longer than the default
# shutdown bound: a request to a hung collector then never outlives a shutdown by more than that.
DEFAULT_EXPORT_TIMEOUT_SECONDS = 5.0
DEFAULT_PROMETHEUS_HOST = "127.0.0.1"
DEFAULT_PROMETHEUS_PORT = 9464
_SDK_BATCH_LOGGER = "opentelemetry.sdk._shared_internal"  # the SDK's BatchSpanProcessor logs here


@dataclass
class Telemetry:
    """One configured process: its clock, event state, providers and the diagnostics reader."""

    enabled: bool
    clock: Callable[[], float]
    state: EventState
    reader: DiagnosticsMetricReader
    service: Dict[str, Any]
    tracer_provider: Optional[TracerProvider] = None
    meter_provider: Optional[MeterProvider] = None
    tracing: bool = False
    instrumented: bool = False
    exporters: List[str] = field(default_factory=list)
    prometheus_address: Optional[tuple] = None
    _owned_tracer_provider: bool = False
    _prometheus_server: Any = None
    _otlp_exporters: List[Any] = field(default_factory=list)  # aborted when shutdown runs out of time

    def snapshot(self) -> DerivedMetrics:
        """What the ``trading.*`` instruments report now (nothing when telemetry is disabled)."""
        if not self.enabled:
            return DerivedMetrics()
        return self.reader.snapshot()


_lock = threading.RLock()
_current: Optional[Telemetry] = None


def _env_list(env: Mapping[str, str], name: str, default: str) -> List[str]:
    return [p.strip().lower() for p in env.get(name, default).split(",") if p.strip()]


def _env_true(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() == "true"


def _resource(service_name: str, instance_id: str, environment: str, env: Mapping[str, str]) -> Resource:
    """Our attributes, overridden by ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME`` from ``env``."""
    attrs: Dict[str, Any] = {"service.name": service_name, "service.instance.id": instance_id,
                             "deployment.environment": environment}
    for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            from urllib.parse import unquote

            attrs[key.strip()] = unquote(value.strip())
    if env.get("OTEL_SERVICE_NAME"):
        attrs["service.name"] = env["OTEL_SERVICE_NAME"]
    from opentelemetry.sdk.version import __version__ as sdk_version

    # Built from ``env`` alone (Resource.create would also read os.environ).
    return Resource({"telemetry.sdk.language": "python", "telemetry.sdk.name": "opentelemetry",
                     "telemetry.sdk.version": sdk_version, **attrs})


def _sampler(env: Mapping[str, str]):
    """The sampler ``OTEL_TRACES_SAMPLER`` / ``…_ARG`` in ``env`` names (the SDK would read os.environ)."""
    from opentelemetry.sdk.trace import sampling

    name = env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    known = {"always_on": sampling.ALWAYS_ON, "always_off": sampling.ALWAYS_OFF,
             "parentbased_always_on": sampling.DEFAULT_ON, "parentbased_always_off": sampling.DEFAULT_OFF}
    ratio = {"traceidratio": sampling.TraceIdRatioBased, "parentbased_traceidratio": sampling.ParentBasedTraceIdRatio}
    if name in known:
        return known[name]
    if name in ratio:
        try:
            rate = float(env.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
            if not 0.0 <= rate <= 1.0:
                raise ValueError(rate)
        except ValueError:
            _logger.warning("otel_diag: OTEL_TRACES_SAMPLER_ARG is not a ratio 0..1; sampling everything")
            rate = 1.0
        return ratio[name](rate)
    _logger.warning("otel_diag: unknown OTEL_TRACES_SAMPLER %r; using parentbased_always_on", name)
    return sampling.DEFAULT_ON


_OTLP_EXPORTERS = {  # (signal, protocol) -> (module, class)
    ("TRACES", "grpc"): ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "OTLPSpanExporter"),
    ("TRACES", "http"): ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "OTLPSpanExporter"),
    ("METRICS", "grpc"): ("opentelemetry.exporter.otlp.proto.grpc.metric_exporter", "OTLPMetricExporter"),
    ("METRICS", "http"): ("opentelemetry.exporter.otlp.proto.http.metric_exporter", "OTLPMetricExporter"),
}


def _otlp_exporter(env: Mapping[str, str], signal: str):
    """The OTLP exporter of ``signal`` (``TRACES`` or ``METRICS``) configured from ``env`` alone
    (the exporters on their own would read endpoint, headers and timeout from os.environ)."""
    import importlib

    protocol = env.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
    module, name = _OTLP_EXPORTERS[(signal, "grpc" if protocol.strip().lower() == "grpc" else "http")]
    exporter_class = getattr(importlib.import_module(module), name)
    return exporter_class(endpoint=_otlp_endpoint(env, signal, protocol), headers=_otlp_headers(env, signal),
                          timeout=_export_timeout(env, signal))


def _otlp_headers(env: Mapping[str, str], signal: str) -> Optional[Dict[str, str]]:
    """``OTEL_EXPORTER_OTLP_[<signal>_]HEADERS`` from ``env`` (``k=v,k2=v2``, values URL-encoded)."""
    from opentelemetry.util.re import parse_env_headers

    raw = env.get(f"OTEL_EXPORTER_OTLP_{signal}_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS")
    return parse_env_headers(raw, liberal=True) if raw else None


def _export_timeout(env: Mapping[str, str], signal: str) -> float:
    """Seconds per export request: ``OTEL_EXPORTER_OTLP_[<signal>_]TIMEOUT`` from ``env`` (seconds, as the
    Python exporters read it), else :data:`DEFAULT_EXPORT_TIMEOUT_SECONDS`; a bad value warns."""
    raw = env.get(f"OTEL_EXPORTER_OTLP_{signal}_TIMEOUT") or env.get("OTEL_EXPORTER_OTLP_TIMEOUT")
    if not raw:
        return DEFAULT_EXPORT_TIMEOUT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not (seconds > 0 and seconds != float("inf")):
        _logger.warning("otel_diag: OTLP timeout %r is not a number of seconds > 0; using %.0f s",
                        raw, DEFAULT_EXPORT_TIMEOUT_SECONDS)
        return DEFAULT_EXPORT_TIMEOUT_SECONDS
    return seconds


def _quiet_dropped_span_warnings() -> None:
    """Unless the application set its level, let the SDK's batch-processor logger pass errors only.

    While a collector is down the queue is full and the processor calls ``warning("Queue full,
    dropping Span.")`` for every span the trading thread ends: the record is built (≈ 6 µs, caller
    lookup included) before a filter drops the repeats — most of what a dead collector costs the
    loop. The OTLP exporter still logs every failed export on its own logger.
    """
    logger = logging.getLogger(_SDK_BATCH_LOGGER)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.ERROR)


def _otlp_endpoint(env: Mapping[str, str], signal: str, protocol: str) -> Optional[str]:
    """The endpoint ``env`` names for ``signal`` (the exporters on their own read only ``os.environ``)."""
    specific = env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    if specific:
        return specific
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if base and protocol.strip().lower() != "grpc":  # OTLP/HTTP: the base URL plus the signal's path
        return f"{base.rstrip('/')}/v1/{signal.lower()}"
    return base or None


def configure(*, clock: Optional[Callable[[], float]] = None, service_name: Optional[str] = None,
              service_instance_id: Optional[str] = None, deployment_environment: str = "paper",
              span_processors: Sequence[SpanProcessor] = (), metric_readers: Sequence[MetricReader] = (),
              tracing: Optional[bool] = None, instrument: bool = True,
              prometheus_port: Optional[int] = None, prometheus_host: str = DEFAULT_PROMETHEUS_HOST,
              max_series_per_metric: int = DEFAULT_MAX_SERIES_PER_METRIC,
              env: Optional[Mapping[str, str]] = None) -> Telemetry:
    """Build the providers, register the diagnostics reader, and (``instrument``) patch the engine.

    ``span_processors`` and ``metric_readers`` are added as given (tests pass in-memory ones).
    ``tracing`` defaults to on exactly when some span sink exists. Calling ``configure`` again
    shuts the previous set-up down first.
    """
    global _current
    env = os.environ if env is None else env
    clock = clock or time.time
    with _lock:
        if _current is not None:
            shutdown()
        name = service_name or sc.DEFAULT_SERVICE_NAME  # OTEL_SERVICE_NAME wins in _resource()
        instance_id = service_instance_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        service = {"name": name, "instance_id": instance_id, "environment": deployment_environment}
        state = EventState(clock, max_series_per_metric=max_series_per_metric)
        reader = DiagnosticsMetricReader(extras=lambda: _extras(state))
        if _env_true(env, "OTEL_SDK_DISABLED"):
            _logger.info("otel_diag: OTEL_SDK_DISABLED=true, no telemetry")
            _current = Telemetry(False, clock, state, reader, service)
            return _current

        resource = _resource(name, instance_id, deployment_environment, env)
        # The state file's service block says what the exported resource says.
        service.update(name=resource.attributes.get("service.name", name),
                       instance_id=resource.attributes.get("service.instance.id", instance_id),
                       environment=resource.attributes.get("deployment.environment", deployment_environment))
        exporters: List[str] = []
        auto = ExecutionInstrumentor()
        if auto.is_instrumented_by_opentelemetry:
            auto.uninstrument()  # instrumented by opentelemetry-instrument: re-bind to this set-up
        global_tp = trace.get_tracer_provider()
        global_mp = metrics.get_meter_provider()
        external_tp = global_tp if isinstance(global_tp, TracerProvider) else None
        external_mp = global_mp if isinstance(global_mp, MeterProvider) else None

        processors: List[SpanProcessor] = list(span_processors)
        otlp_exporters: List[Any] = []
        traces_exporters = _env_list(env, "OTEL_TRACES_EXPORTER", "otlp")
        if external_tp is None and "none" not in traces_exporters:
            if "otlp" in traces_exporters and _otlp_endpoint(env, "TRACES", ""):
                otlp_exporters.append(_otlp_exporter(env, "TRACES"))
                _quiet_dropped_span_warnings()
                processors.append(BatchSpanProcessor(otlp_exporters[-1]))
                exporters.append("otlp-traces")
            if "console" in traces_exporters:
                from opentelemetry.sdk.trace.export import ConsoleSpanExporter

                processors.append(BatchSpanProcessor(ConsoleSpanExporter()))
                exporters.append("console-traces")
        if tracing is None:
            tracing = bool(processors) or external_tp is not None
        tracer_provider = None
        owned_tp = False
        if tracing:
            if processors or external_tp is None:
                tracer_provider = TracerProvider(resource=resource, sampler=_sampler(env), shutdown_on_exit=False)
                owned_tp = True
                for p in processors:
                    tracer_provider.add_span_processor(p)
            else:
                tracer_provider = external_tp
                exporters.append("global-traces")

        readers: List[MetricReader] = [reader, *metric_readers]
        metrics_exporters = _env_list(env, "OTEL_METRICS_EXPORTER", "otlp")
        if external_mp is None and "none" not in metrics_exporters and "otlp" in metrics_exporters and _otlp_endpoint(env, "METRICS", ""):
            otlp_exporters.append(_otlp_exporter(env, "METRICS"))
            readers.append(PeriodicExportingMetricReader(otlp_exporters[-1]))
            exporters.append("otlp-metrics")
        prom_server = prom_address = None
        if prometheus_port is None and "prometheus" in metrics_exporters:
            prometheus_port = int(env.get("OTEL_EXPORTER_PROMETHEUS_PORT", DEFAULT_PROMETHEUS_PORT))
            prometheus_host = env.get("OTEL_EXPORTER_PROMETHEUS_HOST", prometheus_host)
        if prometheus_port is not None:
            prom_reader, prom_server, prom_address = _prometheus(prometheus_host, prometheus_port)
            readers.append(prom_reader)
            exporters.append(f"prometheus http://{prom_address[0]}:{prom_address[1]}/metrics")
        meter_provider = MeterProvider(metric_readers=readers, resource=resource, shutdown_on_exit=False)
        meter_providers = [meter_provider] + ([external_mp] if external_mp is not None else [])

        instrumented = False
        if instrument:
            auto.instrument(tracer_provider=tracer_provider, meter_providers=meter_providers, clock=clock,
                            event_state=state, tracing=tracing, skip_dep_check=True)
            instrumented = True
        else:
            bind_instruments(meter_providers, state)
        # Snapshots read what the provider's instruments observe, through the cell (which follows any
        # re-instrumenting, and is emptied at shutdown) rather than through an SDK collection.
        reader.bind(cell_for(meter_provider))
        _current = Telemetry(True, clock, state, reader, service, tracer_provider, meter_provider, bool(tracing),
                             instrumented, exporters, prom_address, owned_tp, prom_server, otlp_exporters)
        return _current


def _prometheus(host: str, port: int):
    """A PrometheusMetricReader on its own registry, served on ``host:port`` (port 0 picks a free one)."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=True)
    prom_reader = PrometheusMetricReader(registry=registry)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return prom_reader, server, server.server_address[:2]


def _extras(state: EventState) -> Dict[str, Any]:
    """Side-channel details for the diagnostics block: trace ids and position keys (not metrics)."""
    gauges = state.exit_gauges
    return {
        "last_trace_ids": {event: format(tid, "032x") for event, tid in state.last_trace_ids().items()},
        "missing_keys": list(gauges.missing) if gauges is not None else [],
        "underwater_keys": list(gauges.underwater_unprotected) if gauges is not None else [],
        "series_overflow": state.overflowed(),
    }


def current() -> Optional[Telemetry]:
    """The configured telemetry, or None."""
    return _current


def _restore(t: Telemetry) -> None:
    """Unpatch the engine and stop the instruments reporting ``t.state``."""
    if t.instrumented:
        inst = ExecutionInstrumentor()
        if inst.is_instrumented_by_opentelemetry:
            inst.uninstrument()
    unbind_instruments(t.state)


def shutdown(timeout_millis: float = DEFAULT_SHUTDOWN_TIMEOUT_MILLIS) -> bool:
    """Flush and stop exporters, then restore the engine; never takes longer than ``timeout_millis``.

    Returns True when everything flushed in time. Idempotent.
    """
    global _current
    with _lock:
        t, _current = _current, None
    if t is None:
        return True
    if not t.enabled:
        _restore(t)
        return True

    def _flush() -> None:  # spans first, then the final metric export; one failing does not skip the other
        if t._owned_tracer_provider and t.tracer_provider is not None:
            _stop_quietly(t.tracer_provider.shutdown)
        if t.meter_provider is not None:
            _stop_quietly(lambda: t.meter_provider.shutdown(timeout_millis=timeout_millis))

    # The flush and the Prometheus endpoint stop side by side against one deadline: a collector
    # that hangs the flush cannot keep the endpoint listening after this returns.
    deadline = time.monotonic() + timeout_millis / 1000.0
    stops: List[Callable[[], Any]] = [_flush]
    if t._prometheus_server is not None:
        stops.append(lambda: (t._prometheus_server.shutdown(), t._prometheus_server.server_close()))
    workers = [threading.Thread(target=_stop_quietly, args=(stop,), name="otel_diag-shutdown", daemon=True)
               for stop in stops]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    # Unpatch and unbind only now: the readers' last collection (the final OTLP export of a
    # PeriodicExportingMetricReader happens inside MeterProvider.shutdown) must still see the state.
    _restore(t)
    if any(worker.is_alive() for worker in workers):
        # Out of time (a collector refusing, hung or absent): abort the OTLP exporters so their
        # retry waits end now and the batches left are dropped, rather than retried for many
        # seconds by threads that outlive this call; the flush then runs to its end at once.
        for exporter in t._otlp_exporters:
            _stop_quietly(exporter.shutdown)
        _logger.warning("otel_diag: exporters did not flush within %.1f s; telemetry of the last moments is lost",
                        timeout_millis / 1000.0)
        return False
    return True


def _stop_quietly(stop: Callable[[], Any]) -> None:
    try:
        stop()
    except Exception:
        _logger.warning("otel_diag: stopping an exporter or the Prometheus endpoint failed", exc_info=True)
