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
When a host (``opentelemetry-instrument``'s distro, or an application) already set SDK providers, they are
used and nothing of that signal is built or exported here; ``shutdown()`` never touches them
(docs/opentelemetry.md).

A bad setting never stops the application: it is one warning line naming it (a header value never shown,
a URL without its credentials), then its default, or that part of telemetry off. :mod:`otel_diag.settings`
reads and checks every value (``Settings``), the ``OTEL_BSP_*`` and ``OTEL_METRIC_EXPORT_*`` variables the SDK
reads itself included, from ``env`` then ``os.environ``; this module builds and owns what they configure.
Secrets in the settings are masked in every log record (:mod:`otel_diag.redact`).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_diag import semconv as sc
from otel_diag import settings
from otel_diag._internals import meter_provider_resource
from otel_diag.instrumentor import ExecutionInstrumentor, bind_instruments, cell_for
from otel_diag.package import ENTRY_POINT_NAME
from otel_diag.reader import DerivedMetrics, DiagnosticsMetricReader
from otel_diag.redact import hide_in_logs, secrets_in
from otel_diag.settings import (  # noqa: F401 (the settings' public names, importable from here as before)
    DEFAULT_EXPORT_TIMEOUT_SECONDS,
    DEFAULT_PROMETHEUS_HOST,
    DEFAULT_PROMETHEUS_PORT,
    DNS_LOOKUP_SECONDS,
    METRICS_EXPORTERS,
    OTLP_PROTOCOLS,
    TRACES_EXPORTERS,
    Settings,
)
from otel_diag.state import DEFAULT_MAX_SERIES_PER_METRIC, EventState
from otel_diag.targets import DEFAULT_TABLE, table_source

_logger = logging.getLogger("otel_diag")

DEFAULT_SHUTDOWN_TIMEOUT_MILLIS = 5_000  # no shorter than settings.DEFAULT_EXPORT_TIMEOUT_SECONDS
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


_OTLP_EXPORTERS = {  # (signal, protocol) -> (module, class)
    ("TRACES", "grpc"): ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "OTLPSpanExporter"),
    ("TRACES", "http/protobuf"): ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "OTLPSpanExporter"),
    ("METRICS", "grpc"): ("opentelemetry.exporter.otlp.proto.grpc.metric_exporter", "OTLPMetricExporter"),
    ("METRICS", "http/protobuf"): ("opentelemetry.exporter.otlp.proto.http.metric_exporter", "OTLPMetricExporter"),
}


def _otlp_exporter(env: Mapping[str, str], signal: str):
    """The OTLP exporter of ``signal`` (``TRACES`` or ``METRICS``) configured from ``env`` alone (the exporters on
    their own would read endpoint, headers and timeout from os.environ); None when it has no usable endpoint."""
    import importlib

    protocol = settings.otlp_protocol(env, signal)
    endpoint = settings.otlp_endpoint(env, signal, protocol)
    if endpoint is None:
        return None
    module, name = _OTLP_EXPORTERS[(signal, protocol)]
    exporter_class = getattr(importlib.import_module(module), name)
    try:  # the exporters read more settings from os.environ (compression, certificates) and raise on some
        return exporter_class(endpoint=endpoint, headers=settings.otlp_headers(env, signal),
                              timeout=settings.export_timeout(env, signal))
    except Exception as exc:
        problem = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line, whatever the message
        Settings.of(env).warn_once(problem, "otel_diag: an OTLP exporter failed to start (%s); what it would export "
                                            "stays in-process", problem)
        return None


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


def configure(*, clock: Optional[Callable[[], float]] = None, service_name: Optional[str] = None,
              service_instance_id: Optional[str] = None, deployment_environment: str = "paper",
              span_processors: Sequence[SpanProcessor] = (), metric_readers: Sequence[MetricReader] = (),
              tracing: Optional[bool] = None, instrument: bool = True,
              prometheus_port: Optional[int] = None, prometheus_host: str = DEFAULT_PROMETHEUS_HOST,
              max_series_per_metric: int = DEFAULT_MAX_SERIES_PER_METRIC,
              env: Optional[Mapping[str, str]] = None, targets: Any = None) -> Telemetry:
    """Build what telemetry needs, register the diagnostics reader, and (``instrument``) patch the engine.

    When an SDK TracerProvider or MeterProvider is already global (``opentelemetry-instrument``, or a host
    application that owns the SDK), it is used as it is: spans go to the host's TracerProvider, the
    ``trading.*`` instruments are registered on the host's MeterProvider, and no exporter, Prometheus
    endpoint or provider of that signal is built here — the host's settings decide what is exported.
    The diagnostics reader always reads a MeterProvider of its own, without exporters, whose instruments
    observe the same event state as the host's (:func:`otel_diag.instrumentor.cell_for`). The service
    identity (``service.name``, ``service.instance.id``) is then the host's resource's.

    ``span_processors`` and ``metric_readers`` are added as given (tests pass in-memory ones) to a
    provider of our own. ``tracing`` defaults to on exactly when some span sink exists. With
    ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` listing ``execution`` (or ``*``) nothing is patched, as
    under ``opentelemetry-instrument``. ``targets`` is the table of functions to patch (:mod:`otel_diag.targets`:
    rows, a ``module:TABLE`` reference or a .toml/.json file); by default ``OTEL_DIAG_TARGETS``, else the shipped
    engine's table. Calling ``configure`` again shuts the previous set-up down first.
    """
    global _current
    hide_in_logs(secrets_in(os.environ) | (secrets_in(env) if env is not None else set()))
    env = Settings(os.environ if env is None else env)
    clock = clock or time.time
    with _lock:
        if _current is not None:
            shutdown()
        name = service_name or sc.DEFAULT_SERVICE_NAME  # OTEL_SERVICE_NAME wins in settings.resource()
        state = EventState(clock, max_series_per_metric=max_series_per_metric)
        reader = DiagnosticsMetricReader(extras=lambda: _extras(state))
        if settings.env_true(env, "OTEL_SDK_DISABLED"):
            _logger.info("otel_diag: OTEL_SDK_DISABLED=true, no telemetry")
            _current = Telemetry(False, clock, state, reader, _identity(None, name, service_instance_id,
                                                                        deployment_environment))
            return _current

        host_tp, host_mp = _host_providers()
        resource = _host_resource(host_tp, host_mp) or settings.resource(
            name, service_instance_id, deployment_environment, env)
        service = _identity(resource, name, service_instance_id, deployment_environment)
        auto = ExecutionInstrumentor()
        if auto.is_instrumented_by_opentelemetry:
            auto.uninstrument()  # instrumented by opentelemetry-instrument: re-bind to this set-up

        built = _Exports()
        processors: List[SpanProcessor] = list(span_processors)
        if host_tp is None:
            processors += _own_span_processors(env, built)
        if tracing is None:
            tracing = bool(processors) or host_tp is not None
        tracer_provider = None
        owned_tp = False
        if tracing:
            if processors or host_tp is None:
                tracer_provider = TracerProvider(resource=resource, sampler=settings.sampler(env),
                                                 shutdown_on_exit=False)
                owned_tp = True
                for p in processors:
                    tracer_provider.add_span_processor(p)
            else:
                tracer_provider = host_tp
                built.names.append("host-traces")

        readers: List[MetricReader] = [reader, *metric_readers]
        if host_mp is None:
            readers += _own_metric_readers(env, prometheus_port, prometheus_host, built)
        else:
            built.names.append("host-metrics")
            if prometheus_port is not None:
                _logger.info("otel_diag: the host's MeterProvider exports the metrics; the Prometheus endpoint of "
                             "the configuration (port %s) is not started", prometheus_port)
        meter_provider = MeterProvider(metric_readers=readers, resource=resource, shutdown_on_exit=False)
        meter_providers = [meter_provider] + ([host_mp] if host_mp is not None else [])

        instrumented = False
        if instrument and settings.disabled_instrumentation(env, ENTRY_POINT_NAME):
            _logger.info("otel_diag: OTEL_PYTHON_DISABLED_INSTRUMENTATIONS lists %r: the engine is not patched",
                         ENTRY_POINT_NAME)
        elif instrument:
            auto.instrument(tracer_provider=tracer_provider, meter_providers=meter_providers, clock=clock,
                            event_state=state, tracing=tracing, targets=table_source(targets, env) or DEFAULT_TABLE)
            instrumented = True
        if not instrumented:
            bind_instruments(meter_providers, state)
        # Snapshots read what the provider's instruments observe, through the cell (which follows any
        # re-instrumenting) rather than through an SDK collection.
        reader.bind(cell_for(meter_provider))
        _current = Telemetry(True, clock, state, reader, service, tracer_provider, meter_provider, bool(tracing),
                             instrumented, built.names, built.prometheus_address, owned_tp, built.prometheus_server,
                             built.otlp)
        return _current


@dataclass
class _Exports:
    """What configure() built to export with: names for ``Telemetry.exporters``, and what shutdown stops."""

    names: List[str] = field(default_factory=list)
    otlp: List[Any] = field(default_factory=list)
    prometheus_server: Any = None
    prometheus_address: Optional[tuple] = None


def _own_span_processors(env: Settings, built: _Exports) -> List[SpanProcessor]:
    """The span processors ``OTEL_TRACES_EXPORTER`` asks for (with no host TracerProvider)."""
    processors: List[SpanProcessor] = []
    names = settings.exporter_names(env, "OTEL_TRACES_EXPORTER", TRACES_EXPORTERS)
    if "none" in names:
        return processors
    otlp = _otlp_exporter(env, "TRACES") if "otlp" in names else None
    if otlp is not None:
        built.otlp.append(otlp)
        _quiet_dropped_span_warnings()
        processors.append(_batch_processor(env, otlp))
        built.names.append("otlp-traces")
    if "console" in names:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        processors.append(_batch_processor(env, ConsoleSpanExporter()))
        built.names.append("console-traces")
    return processors


def _own_metric_readers(env: Settings, prometheus_port: Optional[int], prometheus_host: str,
                        built: _Exports) -> List[MetricReader]:
    """The metric readers ``OTEL_METRICS_EXPORTER`` and the Prometheus settings ask for (with no host
    MeterProvider)."""
    readers: List[MetricReader] = []
    names = settings.exporter_names(env, "OTEL_METRICS_EXPORTER", METRICS_EXPORTERS)
    if "none" not in names:
        otlp = _otlp_exporter(env, "METRICS") if "otlp" in names else None
        if otlp is not None:
            built.otlp.append(otlp)
            readers.append(_periodic_reader(env, otlp))
            built.names.append("otlp-metrics")
        if "console" in names:
            from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

            readers.append(_periodic_reader(env, ConsoleMetricExporter()))
            built.names.append("console-metrics")
    address = settings.prometheus_address(env, prometheus_port, prometheus_host, names)
    served = _prometheus(env, address) if address is not None else None
    if served is not None:
        prom_reader, built.prometheus_server, built.prometheus_address = served
        readers.append(prom_reader)
        host, port = built.prometheus_address
        built.names.append(f"prometheus http://{host}:{port}/metrics")
    return readers


def _host_providers() -> Tuple[Optional[TracerProvider], Optional[MeterProvider]]:
    """The global SDK providers someone else set (``opentelemetry-instrument``'s configurator, a host app)."""
    tracer_provider = trace.get_tracer_provider()
    meter_provider = metrics.get_meter_provider()
    return (tracer_provider if isinstance(tracer_provider, TracerProvider) else None,
            meter_provider if isinstance(meter_provider, MeterProvider) else None)


def _host_resource(tracer_provider: Optional[TracerProvider], meter_provider: Optional[MeterProvider]):
    """The resource the host's telemetry carries (None with no host provider)."""
    if tracer_provider is not None:
        return tracer_provider.resource
    if meter_provider is not None:
        return meter_provider_resource(meter_provider)
    return None


def _identity(resource: Any, name: str, instance_id: Optional[str], environment: str) -> Dict[str, Any]:
    """The state file's service block: what the exported resource says (the arguments with telemetry off)."""
    attrs = resource.attributes if resource is not None else {}
    return {"name": attrs.get(sc.RESOURCE_SERVICE_NAME, name),
            "instance_id": attrs.get(sc.RESOURCE_SERVICE_INSTANCE_ID, instance_id),
            "environment": attrs.get(sc.RESOURCE_DEPLOYMENT_ENVIRONMENT, environment)}


def _batch_processor(env: Settings, exporter) -> BatchSpanProcessor:
    """A BatchSpanProcessor with ``OTEL_BSP_*`` checked first (the SDK raises ValueError on some bad values)."""
    return BatchSpanProcessor(exporter, **settings.batch_options(env))


def _periodic_reader(env: Settings, exporter) -> PeriodicExportingMetricReader:
    """A PeriodicExportingMetricReader with ``OTEL_METRIC_EXPORT_*`` checked first (the SDK raises on interval <= 0)."""
    return PeriodicExportingMetricReader(exporter, **settings.periodic_options(env))


def _prometheus(env: Settings, address: settings.PrometheusAddress):
    """A PrometheusMetricReader on its own registry, served at ``address`` (port 0 picks a free one); None, with
    one warning naming the setting to blame, when it cannot listen there."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=True)
    try:
        server, _thread = start_http_server(address.port, addr=address.host, registry=registry)
    except (OSError, ValueError) as exc:  # a busy or forbidden port; a host that is no name or not this machine's
        settings.reject_prometheus_address(env, address, exc)
        return None
    return PrometheusMetricReader(registry=registry), server, server.server_address[:2]


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
    """Unpatch the engine. The instruments keep reporting ``t.state``: a host's provider still collects the run's
    counts after this (its final export at exit included); our own provider is shut down by then."""
    if t.instrumented:
        inst = ExecutionInstrumentor()
        if inst.is_instrumented_by_opentelemetry:
            inst.uninstrument()


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
