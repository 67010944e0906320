"""configure() and shutdown(): providers, Resource, the OTEL_* environment, bounded shutdown."""
from __future__ import annotations

import http.server
import subprocess
import sys
import threading

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_diag
from otel_diag import semconv as sc
from otel_diag.instrumentor import ExecutionInstrumentor, import_engine
from tests.fixtures.env import clean_env

T0 = 1_767_571_200.0
OTEL_VARS = ("OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_EXPORTER",
             "OTEL_METRICS_EXPORTER", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_EXPORTER_OTLP_ENDPOINT",
             "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Each test states the OTEL_* variables it means; none leak in from the shell."""
    for name in OTEL_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def traced_signal():
    """A user's own function, decorated: one span and one signal per call."""
    return otel_diag.traced_event("user.signal", event=sc.EVENT_SIGNAL, counter=sc.METRIC_SIGNALS)(lambda: "ok")


def resource_of(exporter: InMemorySpanExporter) -> dict:
    traced_signal()()
    (span,) = exporter.get_finished_spans()
    return dict(span.resource.attributes)


# -- Resource ----------------------------------------------------------------------------------
def test_configure_when_defaults_then_resource_names_service_instance_and_environment(exporter):
    telemetry = otel_diag.configure(span_processors=[SimpleSpanProcessor(exporter)], env={})

    resource = resource_of(exporter)

    assert resource["service.name"] == "executor"
    assert resource["service.instance.id"] and resource["service.instance.id"] == telemetry.service["instance_id"]
    assert resource["deployment.environment.name"] == "paper" and "deployment.environment" not in resource
    assert telemetry.service == {"name": "executor", "instance_id": resource["service.instance.id"],
                                 "environment": "paper"}


def test_configure_when_one_process_then_instance_id_is_the_sdks_and_two_processes_differ(repo_root):
    from opentelemetry.sdk.resources import Resource

    probe = "import otel_diag; print(otel_diag.configure(env={}).service['instance_id'])"
    others = [subprocess.run([sys.executable, "-c", probe], cwd=repo_root, capture_output=True, text=True,
                             timeout=60, env=clean_env(), check=True).stdout.strip() for _ in range(2)]

    first = otel_diag.configure(env={}).service["instance_id"]
    second = otel_diag.configure(env={}).service["instance_id"]

    # One per process, as every SDK provider of the process has it (the SDK's service.instance.id detector).
    assert first == second == Resource.create().attributes["service.instance.id"]
    assert len({first, *others}) == 3 and all(others)


def test_configure_when_otel_service_name_set_then_it_overrides_the_code(exporter, monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "executor-b")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging,team=risk")

    telemetry = otel_diag.configure(service_name="from-code", service_instance_id="exec-1",
                                    span_processors=[SimpleSpanProcessor(exporter)])

    resource = resource_of(exporter)
    assert telemetry.service["name"] == "executor-b"
    assert resource["service.name"] == "executor-b"
    assert resource["service.instance.id"] == "exec-1"
    assert resource["deployment.environment.name"] == "staging"
    assert resource["team"] == "risk"


def test_configure_when_env_mapping_names_the_service_then_it_overrides_the_code(exporter):
    telemetry = otel_diag.configure(service_name="from-code", span_processors=[SimpleSpanProcessor(exporter)],
                                    env={"OTEL_SERVICE_NAME": "executor-c"})

    assert telemetry.service["name"] == "executor-c"
    assert resource_of(exporter)["service.name"] == "executor-c"


# -- what is exported, and when ----------------------------------------------------------------
def test_configure_when_no_endpoint_then_nothing_exported_and_tracing_off():
    import_engine()
    telemetry = otel_diag.configure(env={})

    assert telemetry.enabled and telemetry.exporters == []
    assert telemetry.tracing is False and telemetry.tracer_provider is None
    assert telemetry.instrumented and len(ExecutionInstrumentor.patched()) == 5  # metrics only: the 3 span-only targets stay unpatched


def test_configure_when_traces_exporter_none_then_no_trace_exporter_despite_endpoint():
    telemetry = otel_diag.configure(env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
                                         "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"})

    assert telemetry.exporters == []
    assert telemetry.tracing is False and telemetry.tracer_provider is None


def test_configure_when_endpoint_given_then_otlp_for_traces_and_metrics():
    telemetry = otel_diag.configure(env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    try:
        assert sorted(telemetry.exporters) == ["otlp-metrics", "otlp-traces"]
        assert telemetry.tracing is True
    finally:
        otel_diag.shutdown(timeout_millis=500)  # nothing listens on port 9: a bounded, unflushed shutdown is fine


def test_configure_when_sdk_disabled_then_disabled_telemetry_and_no_patches(monkeypatch, exporter):
    import_engine()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")

    telemetry = otel_diag.configure(span_processors=[SimpleSpanProcessor(exporter)])

    assert telemetry.enabled is False and telemetry.instrumented is False
    assert telemetry.tracer_provider is None and telemetry.meter_provider is None
    assert ExecutionInstrumentor.patched() == []
    assert traced_signal()() == "ok"
    assert exporter.get_finished_spans() == ()
    assert telemetry.snapshot().total_signals == 0
    assert otel_diag.shutdown() is True


def test_configure_when_sampler_always_off_then_no_spans_but_metrics_count(monkeypatch, exporter):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    telemetry = otel_diag.configure(clock=lambda: T0, span_processors=[SimpleSpanProcessor(exporter)])
    fn = traced_signal()

    assert [fn(), fn()] == ["ok", "ok"]

    assert exporter.get_finished_spans() == ()
    derived = telemetry.snapshot()
    assert derived.total_signals == 2
    assert derived.last_event_times == {sc.EVENT_SIGNAL: T0}
    assert derived.extras["last_trace_ids"] == {}  # no sampled trace to point at


def test_configure_when_console_exporter_then_tracing_on_with_a_console_sink():
    telemetry = otel_diag.configure(env={"OTEL_TRACES_EXPORTER": "console"})

    assert telemetry.exporters == ["console-traces"]  # what it prints: tests/integration/test_auto_instrumentation.py
    assert telemetry.tracing is True and telemetry.tracer_provider is not None


def test_configure_when_metric_reader_given_then_it_sees_the_trading_points():
    reader = InMemoryMetricReader()
    otel_diag.configure(clock=lambda: T0, metric_readers=[reader], env={})
    traced_signal()()

    data = reader.get_metrics_data()

    names = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert names[sc.METRIC_LAST_EVENT_TIME].data.data_points[0].value == T0
    assert names[sc.METRIC_SIGNALS].data.data_points[0].value == 1


class _Collector(http.server.BaseHTTPRequestHandler):
    """A stand-in OTLP/HTTP collector: records every POST and answers 200."""

    received: list

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def collector():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_configure_when_env_mapping_names_an_endpoint_then_exports_there(collector):
    host, port = collector.server_address[:2]
    otel_diag.configure(env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{host}:{port}"})
    traced_signal()()

    assert otel_diag.shutdown(timeout_millis=5_000) is True

    paths = [path for path, _ in collector.received]
    assert "/v1/traces" in paths and "/v1/metrics" in paths
    request = ExportTraceServiceRequest.FromString(next(b for p, b in collector.received if p == "/v1/traces"))
    names = [s.name for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert names == ["user.signal"]


# -- lifecycle ---------------------------------------------------------------------------------
def test_configure_when_called_again_then_the_previous_setup_is_shut_down():
    first = otel_diag.configure(env={})
    first.state.stamp(sc.EVENT_SIGNAL)
    second = otel_diag.configure(env={})

    assert otel_diag.current() is second
    assert second.state is not first.state
    assert second.snapshot().last_event_times == {}


def test_shutdown_when_called_twice_then_idempotent():
    otel_diag.configure(env={})

    assert otel_diag.shutdown() is True
    assert otel_diag.shutdown() is True
    assert otel_diag.current() is None
    assert ExecutionInstrumentor.patched() == []


def test_current_when_not_configured_then_none_and_reading_configures_nothing():
    import_engine()

    assert otel_diag.current() is None
    assert otel_diag.current() is None
    assert ExecutionInstrumentor.patched() == []


def test_spec_facade_when_nothing_configured_then_sets_up_in_process_telemetry_and_engine_unpatched():
    from execution.diagnostics_metrics import current_telemetry

    import_engine()
    assert otel_diag.current() is None

    telemetry = current_telemetry()

    assert telemetry is otel_diag.current() is current_telemetry()
    assert telemetry.enabled and not telemetry.instrumented and telemetry.exporters == []
    assert ExecutionInstrumentor.patched() == []


def test_shutdown_when_a_span_processor_hangs_then_returns_while_it_still_hangs():
    class Hanging(SimpleSpanProcessor):
        def shutdown(self):
            entered.set()
            release.wait()  # for ever, until the test lets it go
            left.set()

    entered, release, left = threading.Event(), threading.Event(), threading.Event()
    otel_diag.configure(span_processors=[Hanging(InMemorySpanExporter())], env={})
    try:
        flushed = otel_diag.shutdown(timeout_millis=200)
        still_hanging = entered.is_set() and not left.is_set()
    finally:
        release.set()

    assert flushed is False
    assert still_hanging  # shutdown returned without waiting for the processor


def test_configure_when_env_names_otlp_headers_then_exporters_get_them_from_that_env():
    from otel_diag.settings import otlp_headers

    env = {"OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20abc,x-team=desk",
           "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "x-only=metrics"}

    assert otlp_headers(env, "TRACES") == {"authorization": "Bearer abc", "x-team": "desk"}
    assert otlp_headers(env, "METRICS") == {"x-only": "metrics"}
    assert otlp_headers({}, "TRACES") is None
