"""The OTel settings of one ``configure()`` (:mod:`otel_diag.sdk`), read from its ``env`` and checked.

Every function here turns what ``env`` says into a value the SDK accepts: the exporters listed, the
sampler, the resource, an OTLP exporter's protocol, endpoint, headers and timeout, the ``OTEL_BSP_*``
and ``OTEL_METRIC_EXPORT_*`` options of the batch processor and the periodic reader, where Prometheus
listens. A bad setting never stops the application: it is one warning line naming it (a header value
never shown, a URL without its credentials), then its default, or that part of telemetry off
(:class:`Settings`). The variables the SDK would read from ``os.environ`` on its own are checked here
first, from ``env`` then ``os.environ``. Building the providers, readers and exporters is
:mod:`otel_diag.sdk`'s.
"""
from __future__ import annotations

import errno
import logging
import math
import os
import socket
import threading
from collections import ChainMap
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Set
from urllib.parse import urlsplit, urlunsplit

from opentelemetry.sdk.resources import Resource

from otel_diag import semconv as sc
from otel_diag.redact import shown_value

_logger = logging.getLogger("otel_diag")

# Seconds one OTLP export request may take (the SDK's default is 10). No longer than the default
# shutdown bound (otel_diag.sdk.DEFAULT_SHUTDOWN_TIMEOUT_MILLIS): a request to a hung collector then
# never outlives a shutdown by more than that.
DEFAULT_EXPORT_TIMEOUT_SECONDS = 5.0
DEFAULT_PROMETHEUS_HOST = "127.0.0.1"
DEFAULT_PROMETHEUS_PORT = 9464

# The SDK's defaults (the specification's) for the settings the SDK would read from os.environ itself.
_SDK_DEFAULTS = {"OTEL_BSP_SCHEDULE_DELAY": 5_000, "OTEL_BSP_EXPORT_TIMEOUT": 30_000, "OTEL_BSP_MAX_QUEUE_SIZE": 2_048,
                 "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": 512, "OTEL_METRIC_EXPORT_INTERVAL": 60_000,
                 "OTEL_METRIC_EXPORT_TIMEOUT": 30_000}
_SDK_COUNTS = ("OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE")  # integers; the others are milliseconds
TRACES_EXPORTERS = ("otlp", "console", "none")
METRICS_EXPORTERS = ("otlp", "prometheus", "console", "none")
OTLP_PROTOCOLS = ("http/protobuf", "grpc")
DNS_LOOKUP_SECONDS = 2.0  # a collector's host that does not resolve within this is left to the exporter


class Settings(Mapping[str, str]):
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

    @classmethod
    def of(cls, env: Mapping[str, str]) -> Settings:
        """``env`` itself when it is already read through a Settings (its warnings then count once), else one."""
        return env if isinstance(env, Settings) else cls(env)

    def lookup_failure(self, host: str) -> Optional[str]:
        """Why ``host`` does not resolve, or None (it does, or the lookup outlasts :data:`DNS_LOOKUP_SECONDS`)."""
        if host not in self._lookups:
            self._lookups[host] = _lookup_failure(host)
        return self._lookups[host]


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


def exporter_names(env: Mapping[str, str], name: str, known: Sequence[str]) -> List[str]:
    """``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER``: the known names listed; unknown ones are dropped."""
    raw = env.get(name) or "otlp"
    names = [p.strip().lower() for p in raw.split(",") if p.strip()]
    if any(n not in known for n in names):
        names = [n for n in names if n in known] or ["otlp"]
        Settings.of(env).reject(name, raw, f"a list of {', '.join(known)}", f"using {','.join(names)}")
    return names


def env_true(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() == "true"


def resource(service_name: str, instance_id: Optional[str], environment: str, env: Mapping[str, str]) -> Resource:
    """``Resource.create()`` of our attributes: the SDK's resource detectors (``service.instance.id``, any named by
    ``OTEL_EXPERIMENTAL_RESOURCE_DETECTORS``) under them, ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME``
    from ``env`` over them. With no ``instance_id`` the SDK's own applies (one per process, as every SDK
    provider of the process has it)."""
    attrs: Dict[str, Any] = {sc.RESOURCE_SERVICE_NAME: service_name, sc.RESOURCE_DEPLOYMENT_ENVIRONMENT: environment}
    if instance_id:
        attrs[sc.RESOURCE_SERVICE_INSTANCE_ID] = instance_id
    for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            from urllib.parse import unquote

            attrs[key.strip()] = unquote(value.strip())
    if env.get("OTEL_SERVICE_NAME"):
        attrs[sc.RESOURCE_SERVICE_NAME] = env["OTEL_SERVICE_NAME"]
    return Resource.create(attrs)


def disabled_instrumentation(env: Mapping[str, str], name: str) -> bool:
    """Whether ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` lists entry point ``name`` (or ``*``), as
    ``opentelemetry-instrument`` reads it."""
    listed = {part.strip() for part in env.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")}
    return name in listed or "*" in listed


def sampler(env: Mapping[str, str]):
    """The sampler ``OTEL_TRACES_SAMPLER`` / ``…_ARG`` in ``env`` names (the SDK would read os.environ)."""
    from opentelemetry.sdk.trace import sampling

    settings = Settings.of(env)
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


def signal_setting(env: Mapping[str, str], what: str, signal: str) -> str:
    """The setting that gives ``what`` (``ENDPOINT``, ``HEADERS``…) for ``signal``: its own, else the shared one."""
    specific = f"OTEL_EXPORTER_OTLP_{signal}_{what}"
    return specific if env.get(specific) else f"OTEL_EXPORTER_OTLP_{what}"


def otlp_protocol(env: Mapping[str, str], signal: str) -> str:
    name = signal_setting(env, "PROTOCOL", signal)
    raw = env.get(name) or "http/protobuf"
    if raw.strip().lower() not in OTLP_PROTOCOLS:
        Settings.of(env).reject(name, raw, " or ".join(OTLP_PROTOCOLS), "using http/protobuf")
        return "http/protobuf"
    return raw.strip().lower()


def otlp_headers(env: Mapping[str, str], signal: str) -> Optional[Dict[str, str]]:
    """``OTEL_EXPORTER_OTLP_[<signal>_]HEADERS`` from ``env`` (``k=v,k2=v2``, values URL-encoded); entries that do
    not parse are dropped with one warning that names the setting and never its value."""
    from opentelemetry.util.re import parse_env_headers

    name = signal_setting(env, "HEADERS", signal)
    raw = env.get(name)
    if not raw:
        return None
    entries = [e for e in raw.split(",") if e.strip()]
    parsed = [parse_env_headers(e, liberal=True) for e in entries]  # one entry at a time: {} when it does not parse
    bad = sum(1 for p in parsed if not p)
    if bad:
        Settings.of(env).reject(name, raw, "name=value entries separated by commas, values URL-encoded",
                              f"{bad} of {len(entries)} entries not sent")
    return {k: v for p in parsed for k, v in p.items()}


def export_timeout(env: Mapping[str, str], signal: str) -> float:
    """Seconds per export request: ``OTEL_EXPORTER_OTLP_[<signal>_]TIMEOUT`` from ``env`` (seconds, as the
    Python exporters read it), else :data:`DEFAULT_EXPORT_TIMEOUT_SECONDS`; a bad value warns."""
    name = signal_setting(env, "TIMEOUT", signal)
    raw = env.get(name)
    if not raw:
        return DEFAULT_EXPORT_TIMEOUT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        Settings.of(env).reject(name, raw, "a number of seconds > 0", f"using {DEFAULT_EXPORT_TIMEOUT_SECONDS:g}")
        return DEFAULT_EXPORT_TIMEOUT_SECONDS
    return seconds


def otlp_endpoint(env: Mapping[str, str], signal: str, protocol: str) -> Optional[str]:
    """The endpoint ``env`` names for ``signal`` (the exporters on their own read only ``os.environ``), or None:
    none set, or one that cannot work (warned once)."""
    name = signal_setting(env, "ENDPOINT", signal)
    raw = env.get(name)
    if not raw:
        return None
    url = raw
    if name == "OTEL_EXPORTER_OTLP_ENDPOINT" and protocol != "grpc":  # OTLP/HTTP: the base URL plus the signal's path
        url = _with_path(raw, f"v1/{signal.lower()}")
    problem = _endpoint_problem(Settings.of(env), url, protocol)
    if problem:
        instead = "no OTLP export" if name == "OTEL_EXPORTER_OTLP_ENDPOINT" else f"no OTLP export of {signal.lower()}"
        Settings.of(env).reject(name, raw, problem, instead)
        return None
    return url


def _with_path(base: str, path: str) -> str:
    try:
        parts = urlsplit(base)
    except ValueError:  # _endpoint_problem says what is wrong with it
        return f"{base.rstrip('/')}/{path}"
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{path}"))


def _endpoint_problem(settings: Settings, url: str, protocol: str) -> Optional[str]:
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


def batch_options(env: Settings) -> Dict[str, float]:
    """The BatchSpanProcessor's options, ``OTEL_BSP_*`` checked first (the SDK raises ValueError on some bad values)."""
    queue = env.sdk_number("OTEL_BSP_MAX_QUEUE_SIZE")
    batch = env.sdk_number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
    if batch > queue:  # the SDK raises; a default batch larger than a small queue just shrinks to it
        if env.is_set("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"):
            env.reject("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", batch, f"at most OTEL_BSP_MAX_QUEUE_SIZE ({queue})",
                       f"using {queue}")
        batch = queue
    return {"max_queue_size": queue, "max_export_batch_size": batch,
            "schedule_delay_millis": env.sdk_number("OTEL_BSP_SCHEDULE_DELAY"),
            "export_timeout_millis": env.sdk_number("OTEL_BSP_EXPORT_TIMEOUT")}


def periodic_options(env: Settings) -> Dict[str, float]:
    """The PeriodicExportingMetricReader's options, ``OTEL_METRIC_EXPORT_*`` checked first (the SDK raises on
    interval <= 0)."""
    return {"export_interval_millis": env.sdk_number("OTEL_METRIC_EXPORT_INTERVAL"),
            "export_timeout_millis": env.sdk_number("OTEL_METRIC_EXPORT_TIMEOUT")}


class PrometheusAddress(NamedTuple):
    """Where the Prometheus endpoint listens, and the settings to blame when it cannot."""

    host: str
    port: int
    host_setting: str
    port_setting: str


def prometheus_address(env: Settings, port: Optional[int], host: str,
                       metrics_exporters: Sequence[str]) -> Optional[PrometheusAddress]:
    """``configure()``'s own ``prometheus_port``/``prometheus_host``, else (``prometheus`` among the metrics
    exporters) ``OTEL_EXPORTER_PROMETHEUS_PORT``/``…_HOST``; None when neither asks for the endpoint, or its
    port is no TCP port (one warning naming the setting)."""
    port_setting, host_setting = "prometheus_port", "prometheus_host"  # configure()'s own arguments
    raw: Any = port
    if port is None and "prometheus" in metrics_exporters:
        port_setting, host_setting = "OTEL_EXPORTER_PROMETHEUS_PORT", "OTEL_EXPORTER_PROMETHEUS_HOST"
        raw = env.get(port_setting) or DEFAULT_PROMETHEUS_PORT
        host = env.get(host_setting) or host
    if raw is None:
        return None
    try:
        number = int(raw)
    except ValueError:
        number = -1
    if not 0 <= number <= 65_535:
        env.reject(port_setting, raw, "a TCP port 0..65535", "the Prometheus endpoint is off")
        return None
    return PrometheusAddress(host, number, host_setting, port_setting)


def reject_prometheus_address(env: Settings, address: PrometheusAddress, exc: Exception) -> None:
    """One warning for the Prometheus endpoint that could not listen at ``address`` (``exc``), naming the setting
    to blame: the host when it is no name or not this machine's, else the port (busy or forbidden)."""
    if not isinstance(exc, OSError) or isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        reason = getattr(exc, "strerror", None) or exc
        env.reject(address.host_setting, address.host, f"a local address ({reason})", "the Prometheus endpoint is off")
    else:
        env.reject(address.port_setting, address.port,
                   f"a port free to listen on at {address.host} ({exc.strerror or exc})",
                   "the Prometheus endpoint is off")
