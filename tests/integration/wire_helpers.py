"""Real-wire test helpers: an OTLP/HTTP receiver and a Prometheus server, both on 127.0.0.1 only.

Usage::

    with OtlpHttpReceiver() as rx:                       # binds 127.0.0.1:<free port>
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint, ...}
        ...run the exporter...
        rx.spans()                                       # every span that arrived, flattened
        rx.metric_points()                               # every metric point that arrived, flattened

    with PrometheusServer(tmp_path, targets=["127.0.0.1:9464"], rule_files=[rules]) as prom:
        prom.alerts()                                    # GET /api/v1/alerts
        prom.query("up")                                 # GET /api/v1/query

The receiver decodes ``ExportTraceServiceRequest`` / ``ExportMetricsServiceRequest`` with
opentelemetry-proto and answers like a Collector (200 and an empty protobuf response). Every
wait here is bounded by a deadline.
"""
from __future__ import annotations

import gzip
import json
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from tests.fixtures.env import LOOPBACK, free_port
from tests.fixtures.polling import wait_until

# OTLP/HTTP path -> (request type, response type)
_OTLP_PATHS = {
    "/v1/traces": (trace_service_pb2.ExportTraceServiceRequest, trace_service_pb2.ExportTraceServiceResponse),
    "/v1/metrics": (metrics_service_pb2.ExportMetricsServiceRequest, metrics_service_pb2.ExportMetricsServiceResponse),
    "/v1/logs": (logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse),
}


# -- OTLP decoding ----------------------------------------------------------------------
def any_value(v: Any) -> Any:
    """An OTLP ``AnyValue`` as a plain Python value (arrays as tuples, kvlists as dicts)."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(any_value(x) for x in v.array_value.values)
    if kind == "kvlist_value":
        return attributes(v.kvlist_value.values)
    return getattr(v, kind)


def attributes(kvs: Iterable[Any]) -> Dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


@dataclass(frozen=True)
class WireSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    kind: int
    attributes: Dict[str, Any]
    resource: Dict[str, Any]
    scope: str
    status_code: int
    start_time_unix_nano: int
    end_time_unix_nano: int


@dataclass(frozen=True)
class WirePoint:
    name: str
    unit: str
    kind: str  # "sum", "gauge", "histogram", ...
    attributes: Dict[str, Any]
    value: Any
    time_unix_nano: int
    resource: Dict[str, Any]
    scope: str
    monotonic: Optional[bool] = None
    temporality: Optional[int] = None


def _number(p: Any) -> Any:
    return p.as_int if p.WhichOneof("value") == "as_int" else p.as_double


def decode_spans(req: trace_service_pb2.ExportTraceServiceRequest) -> List[WireSpan]:
    out = []
    for rs in req.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(WireSpan(
                    name=s.name, trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                    parent_span_id=s.parent_span_id.hex(), kind=s.kind, attributes=attributes(s.attributes),
                    resource=resource, scope=ss.scope.name, status_code=s.status.code,
                    start_time_unix_nano=s.start_time_unix_nano, end_time_unix_nano=s.end_time_unix_nano))
    return out


def decode_metric_points(req: metrics_service_pb2.ExportMetricsServiceRequest) -> List[WirePoint]:
    out = []
    for rm in req.resource_metrics:
        resource = attributes(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                data = getattr(m, kind)
                for p in data.data_points:
                    if kind in ("sum", "gauge"):
                        value = _number(p)
                    elif kind == "histogram":
                        value = {"count": p.count, "sum": p.sum, "bucket_counts": tuple(p.bucket_counts)}
                    else:
                        value = None
                    out.append(WirePoint(
                        name=m.name, unit=m.unit, kind=kind, attributes=attributes(p.attributes), value=value,
                        time_unix_nano=p.time_unix_nano, resource=resource, scope=sm.scope.name,
                        monotonic=getattr(data, "is_monotonic", None) if kind == "sum" else None,
                        temporality=getattr(data, "aggregation_temporality", None) if kind in ("sum", "histogram") else None))
    return out


@dataclass
class Received:
    """One OTLP/HTTP request as it arrived."""

    path: str
    headers: Dict[str, str]  # names lower-cased
    body_bytes: int
    message: Any  # the decoded Export*ServiceRequest
    at: float = field(default_factory=time.monotonic)


class PostReceiver:
    """An HTTP server on 127.0.0.1 (a free port by default) handing every POST body to ``_handle``, in a thread."""

    thread_name = "post-receiver"

    def __init__(self, host: str = LOOPBACK, port: int = 0) -> None:
        if host != LOOPBACK:
            raise ValueError("the test receiver binds 127.0.0.1 only")
        self.errors: List[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver._handle(self, body)

            def log_message(self, fmt: str, *args: Any) -> None:  # keep pytest output clean
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: Optional[threading.Thread] = None

    @property
    def address(self) -> Tuple[str, int]:
        return self._server.server_address[:2]

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() waits for serve_forever(), which never ran otherwise
            self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        raise NotImplementedError

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, payload: bytes, content_type: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)


class WebhookReceiver(PostReceiver):
    """Records every JSON body POSTed to it: Alertmanager's webhook notifications."""

    thread_name = "webhook-receiver"

    def __init__(self) -> None:
        super().__init__()
        self.payloads: List[Dict[str, Any]] = []

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}/"

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        try:
            payload = json.loads(body.decode("utf-8"))
        except ValueError as exc:
            with self._lock:
                self.errors.append(f"{handler.path}: {exc!r}: {body[:200]!r}")
        else:
            with self._lock:
                self.payloads.append(payload)
        self._reply(handler, 200, b"", "text/plain")

    def alerts(self) -> List[Dict[str, Any]]:
        """Every alert of every notification so far, each with the notification's ``receiver`` added."""
        with self._lock:
            return [dict(a, receiver=p.get("receiver")) for p in self.payloads for a in p.get("alerts", [])]

    def delivered(self, status: str = "firing") -> Set[str]:
        return {a["labels"].get("alertname") for a in self.alerts() if a.get("status") == status}


class OtlpHttpReceiver(PostReceiver):
    """A minimal OTLP/HTTP (protobuf) receiver on 127.0.0.1: records and decodes what it is sent.

    ``status`` is the HTTP status it answers with (200 like a healthy Collector).
    Bodies that fail to decode are answered 400 and kept in ``errors``.
    """

    thread_name = "otlp-receiver"

    def __init__(self, host: str = LOOPBACK, port: int = 0, status: int = 200) -> None:
        super().__init__(host, port)
        self.status = status
        self.requests: List[Received] = []

    @property
    def endpoint(self) -> str:
        """The base URL for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the exporter appends ``/v1/<signal>``)."""
        host, port = self.address
        return f"http://{host}:{port}"

    # -- handling -------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        path = urllib.parse.urlsplit(handler.path).path
        kinds = _OTLP_PATHS.get(path)
        if kinds is None:
            self._reply(handler, 404, b"", "text/plain")
            return
        request_type, response_type = kinds
        try:
            encoding = (handler.headers.get("Content-Encoding") or "").lower()
            raw = gzip.decompress(body) if encoding == "gzip" else zlib.decompress(body) if encoding == "deflate" else body
            message = request_type()
            message.ParseFromString(raw)
        except Exception as exc:  # a malformed body is the exporter's bug: record it, answer 400
            with self._lock:
                self.errors.append(f"{path}: {exc!r}")
            self._reply(handler, 400, b"", "text/plain")
            return
        with self._lock:
            self.requests.append(Received(path, {k.lower(): v for k, v in handler.headers.items()}, len(body), message))
        self._reply(handler, self.status, response_type().SerializeToString(), "application/x-protobuf")

    # -- what arrived ---------------------------------------------------------------
    def received(self, path: str) -> List[Received]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def trace_requests(self) -> List[Received]:
        return self.received("/v1/traces")

    def metric_requests(self) -> List[Received]:
        return self.received("/v1/metrics")

    def spans(self) -> List[WireSpan]:
        return [s for r in self.trace_requests() for s in decode_spans(r.message)]

    def metric_points(self, request: Optional[Received] = None) -> List[WirePoint]:
        """The points of one metrics request, or of every one when ``request`` is None."""
        requests = [request] if request is not None else self.metric_requests()
        return [p for r in requests for p in decode_metric_points(r.message)]


# -- Prometheus ---------------------------------------------------------------------------
def prometheus_binary() -> Optional[str]:
    return shutil.which("prometheus")


class ServerProcess:
    """A real server binary on 127.0.0.1 with its config and data in ``workdir``: started, checked ready at
    ``/-/ready``, stopped; its output in ``<name>.log``."""

    name = "server"

    def __init__(self, workdir: Path, binary: str, port: Optional[int] = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.binary = binary
        self.port = port or free_port()
        self.log_path = self.workdir / f"{self.name}.log"
        self.proc: Optional[subprocess.Popen] = None
        self._log = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def command(self) -> List[str]:
        raise NotImplementedError

    def start(self, ready_timeout: float = 30.0):
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir)

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    return r.status == 200
            except (urllib.error.URLError, OSError):
                return False

        if not wait_until(ready, ready_timeout, 0.2):
            self.stop()
            raise TimeoutError(f"{self.name} not ready within {ready_timeout:.0f} s:\n{self.log()}")
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-tail:]
        except OSError:
            return ""


class PrometheusServer(ServerProcess):
    """A real Prometheus on 127.0.0.1 scraping ``targets``, evaluating ``rule_files``, sending alerts to
    ``alertmanagers`` (addresses); data in ``workdir``."""

    name = "prometheus"

    def __init__(self, workdir: Path, targets: Sequence[str], rule_files: Sequence[Path] = (),
                 scrape_interval: str = "1s", evaluation_interval: str = "1s", job: str = "executor",
                 binary: Optional[str] = None, port: Optional[int] = None,
                 alertmanagers: Sequence[str] = ()) -> None:
        binary = binary or prometheus_binary()
        if binary is None:
            raise FileNotFoundError("prometheus is not installed: `make setup` installs Debian's prometheus package")
        for t in [*targets, *alertmanagers]:
            if not t.startswith(f"{LOOPBACK}:"):
                raise ValueError(f"scrape targets and alertmanagers must be on {LOOPBACK}, got {t!r}")
        super().__init__(workdir, binary, port)
        self.config_path = self.workdir / "prometheus.yml"
        config: Dict[str, Any] = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval,
                       "scrape_timeout": scrape_interval},
            "rule_files": [str(Path(p).resolve()) for p in rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
        }
        if alertmanagers:  # as collector/prometheus/prometheus.yml has it
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]}
        self.config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")  # JSON is YAML

    def command(self) -> List[str]:
        return [self.binary, f"--config.file={self.config_path}", f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address={self.address}", "--storage.tsdb.retention.time=1h", "--log.level=info"]

    # -- HTTP API ---------------------------------------------------------------------
    def api(self, path: str, params: Optional[Mapping[str, str]] = None, timeout: float = 5.0) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=timeout) as r:
            doc = json.loads(r.read().decode("utf-8"))
        if doc.get("status") != "success":
            raise RuntimeError(f"prometheus API {path}: {doc}")
        return doc["data"]

    def alerts(self) -> List[Dict[str, Any]]:
        """Active alerts (pending and firing), each with ``labels``, ``state``, ``activeAt``, ``value``."""
        return self.api("alerts")["alerts"]

    def query(self, expr: str) -> List[Dict[str, Any]]:
        return self.api("query", {"query": expr})["result"]

    def targets(self) -> List[Dict[str, Any]]:
        return self.api("targets")["activeTargets"]


class AlertmanagerServer(ServerProcess):
    """Debian's prometheus-alertmanager on 127.0.0.1 with ``config`` (a dict); gossip off, data in ``workdir``."""

    name = "alertmanager"

    def __init__(self, workdir: Path, config: Mapping[str, Any], binary: str) -> None:
        super().__init__(workdir, binary)
        self.config_path = self.workdir / "alertmanager.yml"
        self.config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")  # JSON is YAML

    def command(self) -> List[str]:
        return [self.binary, f"--config.file={self.config_path}", f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address={self.address}", "--cluster.listen-address=", "--log.level=debug"]

    def alerts(self) -> List[Dict[str, Any]]:
        """GET /api/v2/alerts: what Alertmanager holds (Prometheus sent it and it has not resolved)."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=5) as r:
            return json.loads(r.read().decode("utf-8"))


def stop_process(proc: Optional[subprocess.Popen], timeout: float = 10.0) -> Optional[int]:
    """SIGTERM ``proc`` (this one process, by its id), wait, SIGKILL if it lingers; its exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(timeout)
    return proc.returncode
