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

A bad setting never stops the application: it is one warning line naming it (a header value never shown,
a URL without its credentials), then its default, or that part of telemetry off (``_Settings``). The
``OTEL_BSP_*`` and ``OTEL_METRIC_EXPORT_*`` variables the SDK reads itself are checked here first, from ``env``
then ``os.environ``. Secrets in the settings are masked in every log record (:mod:`otel_diag.redact`).
"""
from __future__ import annotations

import errno
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections import ChainMap
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_diag import semconv as sc
from otel_diag.instrumentor import ExecutionInstrumentor, bind_instruments, cell_for, unbind_instruments
from otel_diag.reader import DerivedMetrics, DiagnosticsMetricReader
from otel_diag.redact import hide_in_logs, secrets_in, shown_value
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

# The SDK's defaults (the specification's) for the settings the SDK would read from os.environ itself.
_SDK_DEFAULTS = {"OTEL_BSP_SCHEDULE_DELAY": 5_000, "OTEL_BSP_EXPORT_TIMEOUT": 30_000, "OTEL_BSP_MAX_QUEUE_SIZE": 2_048,
                 "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": 512, "OTEL_METRIC_EXPORT_INTERVAL": 60_000,
                 "OTEL_METRIC_EXPORT_TIMEOUT": 30_000}
_SDK_COUNTS = ("OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE")  # integers; the others are milliseconds
TRACES_EXPORTERS = ("otlp", "console", "none")
METRICS_EXPORTERS = ("otlp", "prometheus", "console", "none")
OTLP_PROTOCOLS = ("http/protobuf", "grpc")
DNS_LOOKUP_SECONDS = 2.0  # a collector's host that does not resolve within this is left to the exporter


class _Settings(Mapping[str, str]):
    """``env`` as one ``configure()`` reads it: a bad value is one warning line naming the setting, then its default
    (or that part off). The SDK would raise on some bad values and print tracebacks for others; nothing bad reaches it.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        # Variables the SDK reads from os.environ on its own: from ``env`` first, then where the SDK looks.
        self._sdk_env: Mapping[str, str] = env if env is os.environ else ChainMap(dict(env), os.environ)
        self._warned: Set[str] = set()
        self._lookups: Dict[str, Optional[str]] = {}

    def __getitem__(self, name: str) -> str:
        return self._env[name]

    def __iter__(self):
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)

    def reject(self, name: str, value: object, expected: str, instead: str) -> None:
        """One warning for ``name`` per configure(): its value as it may be shown, what was expected, what happens."""
        shown = shown_value(name, str(value))
        self.warn_once(name, "otel_diag: %s=%s: expected %s; %s", name, shown, expected, instead)

    def warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _logger.warning(message, *args)

    def sdk_number(self, name: str) -> float:
        """The SDK setting ``name``: an integer > 0 (milliseconds, or a count), else the SDK's default."""
        raw, default = self._sdk_env.get(name), _SDK_DEFAULTS[name]
        if raw is None or not raw.strip():
            return default
        try:
            value = int(raw) if name in _SDK_COUNTS else float(raw)
        except ValueError:
            value = 0
        if not 0 < value < math.inf:
            self.reject(name, raw, "an integer > 0" if name in _SDK_COUNTS else "a number of milliseconds > 0",
                        f"using {default}")
            return default
        return value

    def is_set(self, name: str) -> bool:
        return bool((self._sdk_env.get(name) or "").strip())

    def lookup_failure(self, host: str) -> Optional[str]:
        """Why ``host`` does not resolve, or None (it does, or the lookup outlasts :data:`DNS_LOOKUP_SECONDS`)."""
        if host not in self._lookups:
            self._lookups[host] = _lookup_failure(host)
        return self._lookups[host]


def _settings(env: Mapping[str, str]) -> _Settings:
    return env if isinstance(env, _Settings) else _Settings(env)


def _lookup_failure(host: str) -> Optional[str]:
    failure: List[str] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, None)
        except (OSError, ValueError) as exc:  # gaierror; UnicodeError for a name IDNA cannot encode
            failure.append(getattr(exc, "strerror", None) or str(exc))

    worker = threading.Thread(target=lookup, name="otel_diag-lookup", daemon=True)
    worker.start()
    worker.join(DNS_LOOKUP_SECONDS)
    return failure[0] if failure else None


def _exporter_names(env: Mapping[str, str], name: str, known: Sequence[str]) -> List[str]:
    """``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER``: the known names listed; unknown ones are dropped."""
    raw = env.get(name) or "otlp"
    names = [p.strip().lower() for p in raw.split(",") if p.strip()]
    if any(n not in known for n in names):
        names = [n for n in names if n in known] or ["otlp"]
        _settings(env).reject(name, raw, f"a list of {', '.join(known)}", f"using {','.join(names)}")
    return names


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

    settings = _settings(env)
    raw = env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on")
    name = raw.strip().lower()
    known = {"always_on": sampling.ALWAYS_ON, "always_off": sampling.ALWAYS_OFF,
             "parentbased_always_on": sampling.DEFAULT_ON, "parentbased_always_off": sampling.DEFAULT_OFF}
    ratio = {"traceidratio": sampling.TraceIdRatioBased, "parentbased_traceidratio": sampling.ParentBasedTraceIdRatio}
    if name in known:
        return known[name]
    if name in ratio:
        arg = env.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
        try:
            rate = float(arg)
        except ValueError:
            rate = math.nan
        if not 0.0 <= rate <= 1.0:
            settings.reject("OTEL_TRACES_SAMPLER_ARG", arg, "a ratio 0..1", "sampling everything")
            rate = 1.0
        return ratio[name](rate)
    settings.reject("OTEL_TRACES_SAMPLER", raw, f"one of {', '.join([*known, *ratio])}", "using parentbased_always_on")
    return sampling.DEFAULT_ON


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

    protocol = _otlp_protocol(env, signal)
    endpoint = _otlp_endpoint(env, signal, protocol)
    if endpoint is None:
        return None
    module, name = _OTLP_EXPORTERS[(signal, protocol)]
    exporter_class = getattr(importlib.import_module(module), name)
    try:  # the exporters read more settings from os.environ (compression, certificates) and raise on some
        return exporter_class(endpoint=endpoint, headers=_otlp_headers(env, signal),
                              timeout=_export_timeout(env, signal))
    except Exception as exc:
        problem = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line, whatever the message
        _settings(env).warn_once(problem, "otel_diag: an OTLP exporter failed to start (%s); what it would export "
                                          "stays in-process", problem)
        return None


def _signal_setting(env: Mapping[str, str], what: str, signal: str) -> str:
    """The setting that gives ``what`` (``ENDPOINT``, ``HEADERS``…) for ``signal``: its own, else the shared one."""
    specific = f"OTEL_EXPORTER_OTLP_{signal}_{what}"
    return specific if env.get(specific) else f"OTEL_EXPORTER_OTLP_{what}"


def _otlp_protocol(env: Mapping[str, str], signal: str) -> str:
    name = _signal_setting(env, "PROTOCOL", signal)
    raw = env.get(name) or "http/protobuf"
    if raw.strip().lower() not in OTLP_PROTOCOLS:
        _settings(env).reject(name, raw, " or ".join(OTLP_PROTOCOLS), "using http/protobuf")
        return "http/protobuf"
    return raw.strip().lower()


def _otlp_headers(env: Mapping[str, str], signal: str) -> Optional[Dict[str, str]]:
    """``OTEL_EXPORTER_OTLP_[<signal>_]HEADERS`` from ``env`` (``k=v,k2=v2``, values URL-encoded); entries that do
    not parse are dropped with one warning that names the setting and never its value."""
    from opentelemetry.util.re import parse_env_headers

    name = _signal_setting(env, "HEADERS", signal)
    raw = env.get(name)
    if not raw:
        return None
    entries = [e for e in raw.split(",") if e.strip()]
    parsed = [parse_env_headers(e, liberal=True) for e in entries]  # one entry at a time: {} when it does not parse
    bad = sum(1 for p in parsed if not p)
    if bad:
        _settings(env).reject(name, raw, "name=value entries separated by commas, values URL-encoded",
                              f"{bad} of {len(entries)} entries not sent")
    return {k: v for p in parsed for k, v in p.items()}


def _export_timeout(env: Mapping[str, str], signal: str) -> float:
    """Seconds per export request: ``OTEL_EXPORTER_OTLP_[<signal>_]TIMEOUT`` from ``env`` (seconds, as the
    Python exporters read it), else :data:`DEFAULT_EXPORT_TIMEOUT_SECONDS`; a bad value warns."""
    name = _signal_setting(env, "TIMEOUT", signal)
    raw = env.get(name)
    if not raw:
        return DEFAULT_EXPORT_TIMEOUT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        _settings(env).reject(name, raw, "a number of seconds > 0", f"using {DEFAULT_EXPORT_TIMEOUT_SECONDS:g}")
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
    """The endpoint ``env`` names for ``signal`` (the exporters on their own read only ``os.environ``), or None:
    none set, or one that cannot work (warned once)."""
    name = _signal_setting(env, "ENDPOINT", signal)
    raw = env.get(name)
    if not raw:
        return None
    url = raw
    if name == "OTEL_EXPORTER_OTLP_ENDPOINT" and protocol != "grpc":  # OTLP/HTTP: the base URL plus the signal's path
        url = _with_path(raw, f"v1/{signal.lower()}")
    problem = _endpoint_problem(_settings(env), url, protocol)
    if problem:
        instead = "no OTLP export" if name == "OTEL_EXPORTER_OTLP_ENDPOINT" else f"no OTLP export of {signal.lower()}"
        _settings(env).reject(name, raw, problem, instead)
        return None
    return url


def _with_path(base: str, path: str) -> str:
    try:
        parts = urlsplit(base)
    except ValueError:  # _endpoint_problem says what is wrong with it
        return f"{base.rstrip('/')}/{path}"
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{path}"))


def _endpoint_problem(settings: _Settings, url: str, protocol: str) -> Optional[str]:
    """What an OTLP endpoint ``url`` needs and lacks, or None when an exporter can use it."""
    grpc = protocol == "grpc"
    example = f"a URL like http://host:{4317 if grpc else 4318}"
    try:
        parts = urlsplit(url if "//" in url or not grpc else "//" + url)  # gRPC takes a bare host:port too
        parts.port  # noqa: B018 (raises ValueError when not a port number)
    except ValueError:
        return example
    if grpc and parts.scheme == "unix":
        return None
    schemes = ("", "http", "https") if grpc else ("http", "https")
    if any(c.isspace() for c in url) or not parts.hostname or parts.scheme not in schemes:
        return example
    if grpc and parts.username is not None:
        return "no credentials in a gRPC endpoint (send them in OTEL_EXPORTER_OTLP_HEADERS)"
    failure = settings.lookup_failure(parts.hostname)
    if failure:
        return f"a host that resolves ({failure})"
    return None


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
    hide_in_logs(secrets_in(os.environ) | (secrets_in(env) if env is not None else set()))
    env = _Settings(os.environ if env is None else env)
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
        traces_exporters = _exporter_names(env, "OTEL_TRACES_EXPORTER", TRACES_EXPORTERS)
        if external_tp is None and "none" not in traces_exporters:
            otlp = _otlp_exporter(env, "TRACES") if "otlp" in traces_exporters else None
            if otlp is not None:
                otlp_exporters.append(otlp)
                _quiet_dropped_span_warnings()
                processors.append(_batch_processor(env, otlp))
                exporters.append("otlp-traces")
            if "console" in traces_exporters:
                from opentelemetry.sdk.trace.export import ConsoleSpanExporter

                processors.append(_batch_processor(env, ConsoleSpanExporter()))
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
        metrics_exporters = _exporter_names(env, "OTEL_METRICS_EXPORTER", METRICS_EXPORTERS)
        if external_mp is None and "none" not in metrics_exporters:
            otlp = _otlp_exporter(env, "METRICS") if "otlp" in metrics_exporters else None
            if otlp is not None:
                otlp_exporters.append(otlp)
                readers.append(_periodic_reader(env, otlp))
                exporters.append("otlp-metrics")
            if "console" in metrics_exporters:
                from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

                readers.append(_periodic_reader(env, ConsoleMetricExporter()))
                exporters.append("console-metrics")
        prom_server = prom_address = None
        port_setting, host_setting = "prometheus_port", "prometheus_host"  # configure()'s own arguments
        if prometheus_port is None and "prometheus" in metrics_exporters:
            port_setting, host_setting = "OTEL_EXPORTER_PROMETHEUS_PORT", "OTEL_EXPORTER_PROMETHEUS_HOST"
            prometheus_port = env.get(port_setting) or DEFAULT_PROMETHEUS_PORT
            prometheus_host = env.get(host_setting) or prometheus_host
        if prometheus_port is not None:
            served = _prometheus(env, prometheus_host, prometheus_port, host_setting, port_setting)
            if served is not None:
                prom_reader, prom_server, prom_address = served
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


def _batch_processor(env: _Settings, exporter) -> BatchSpanProcessor:
    """A BatchSpanProcessor with ``OTEL_BSP_*`` checked first (the SDK raises ValueError on some bad values)."""
    queue = env.sdk_number("OTEL_BSP_MAX_QUEUE_SIZE")
    batch = env.sdk_number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
    if batch > queue:  # the SDK raises; a default batch larger than a small queue just shrinks to it
        if env.is_set("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"):
            env.reject("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", batch, f"at most OTEL_BSP_MAX_QUEUE_SIZE ({queue})",
                       f"using {queue}")
        batch = queue
    return BatchSpanProcessor(exporter, max_queue_size=queue, max_export_batch_size=batch,
                              schedule_delay_millis=env.sdk_number("OTEL_BSP_SCHEDULE_DELAY"),
                              export_timeout_millis=env.sdk_number("OTEL_BSP_EXPORT_TIMEOUT"))


def _periodic_reader(env: _Settings, exporter) -> PeriodicExportingMetricReader:
    """A PeriodicExportingMetricReader with ``OTEL_METRIC_EXPORT_*`` checked first (the SDK raises on interval <= 0)."""
    return PeriodicExportingMetricReader(exporter, export_interval_millis=env.sdk_number("OTEL_METRIC_EXPORT_INTERVAL"),
                                         export_timeout_millis=env.sdk_number("OTEL_METRIC_EXPORT_TIMEOUT"))


def _prometheus(env: _Settings, host: str, port: object, host_setting: str, port_setting: str):
    """A PrometheusMetricReader on its own registry, served on ``host:port`` (port 0 picks a free one); None, with
    one warning naming the setting (``host_setting`` or ``port_setting``) to blame, when it cannot listen there."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, start_http_server

    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65_535:
        env.reject(port_setting, port, "a TCP port 0..65535", "the Prometheus endpoint is off")
        return None
    registry = CollectorRegistry(auto_describe=True)
    try:
        server, _thread = start_http_server(number, addr=host, registry=registry)
    except (OSError, ValueError) as exc:  # a busy or forbidden port; a host that is no name or not this machine's
        if not isinstance(exc, OSError) or isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
            reason = getattr(exc, "strerror", None) or exc
            env.reject(host_setting, host, f"a local address ({reason})", "the Prometheus endpoint is off")
        else:
            env.reject(port_setting, number, f"a port free to listen on at {host} ({exc.strerror or exc})",
                       "the Prometheus endpoint is off")
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
