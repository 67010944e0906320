"""A host application that owns the OpenTelemetry SDK: otel_diag uses its providers and leaves them as they were.

The host sets global SDK providers of its own (an in-memory span exporter and metric reader stand in
for whatever it exports to), then runs the executor, which calls ``otel_diag.configure()`` and
``otel_diag.shutdown()``. The host's providers get the engine's spans and every ``trading.*`` count, and
keep working afterwards; ``diagnostics.json`` names the service as the host's telemetry does.
"""
from __future__ import annotations

import json
import os
from typing import Dict

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.test.globals_test import reset_metrics_globals, reset_trace_globals

import otel_diag
from execution.executor_live import RunOptions, run
from otel_diag import semconv as sc
from otel_diag.instrumentor import ExecutionInstrumentor
from tests.fixtures.replay import in_memory_run, point_values, span_keys

CYCLES = 60
HOST_RESOURCE = {"service.name": "desk-host", "service.instance.id": "host-7", "deployment.environment.name": "live"}


class Host:
    def __init__(self) -> None:
        resource = Resource.create(HOST_RESOURCE)
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader], resource=resource)

    def counts(self) -> Dict[str, float]:
        """Every trading.* metric the host's reader collects now: its points' values summed."""
        data = self.reader.get_metrics_data()
        return {m.name: sum(p.value for p in m.data.data_points)
                for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
                if sm.scope.name == sc.INSTRUMENTATION_NAME}


@pytest.fixture
def host():
    """The host's providers, not yet global (``installed`` makes them so)."""
    reset_trace_globals()
    reset_metrics_globals()
    h = Host()
    yield h
    otel_diag.shutdown()
    reset_trace_globals()
    reset_metrics_globals()
    h.tracer_provider.shutdown()
    h.meter_provider.shutdown()


@pytest.fixture
def installed(host):
    trace.set_tracer_provider(host.tracer_provider)
    metrics.set_meter_provider(host.meter_provider)
    return host


def test_configure_when_host_owns_the_sdk_then_its_providers_are_used_and_none_built(installed):
    host = installed
    telemetry = otel_diag.configure(env={}, prometheus_port=0)

    assert telemetry.tracer_provider is host.tracer_provider and telemetry.tracing
    assert telemetry.meter_provider is not host.meter_provider  # the diagnostics reader's own, without exporters
    assert telemetry.exporters == ["host-traces", "host-metrics"]
    assert telemetry.prometheus_address is None  # no second endpoint: the host's settings decide what is exported
    assert telemetry.service == {"name": "desk-host", "instance_id": "host-7", "environment": "live"}


def test_run_when_host_owns_the_sdk_then_host_gets_spans_and_totals_and_keeps_working(tmp_path, installed):
    host = installed
    summary = run(RunOptions(state_dir=str(tmp_path), cycles=CYCLES))

    # Spans: the engine's, in the host's provider.
    names = [s.name for s in host.spans.get_finished_spans()]
    assert names.count(sc.SPAN_EXECUTOR_CYCLE) == CYCLES and sc.SPAN_RISK_CHECK in names
    # Metrics: after otel_diag.shutdown(), the host's reader still collects the run's totals.
    assert ExecutionInstrumentor.patched() == []
    counts = host.counts()
    stats = summary.stats
    assert counts[sc.METRIC_EXIT_SCANS] == stats.exit_scans == CYCLES
    assert counts[sc.METRIC_SIGNALS] == stats.signals > 0
    assert counts[sc.METRIC_VETOES] == sum(stats.vetoes.values())
    assert counts[sc.METRIC_EXIT_TRIGGERS] == stats.exit_triggers
    doc = json.loads((tmp_path / "diagnostics.json").read_text())
    assert counts[sc.METRIC_ORDERS] == doc["runtime_diagnostics"]["veto_counters"]["total_orders"]
    assert counts[sc.METRIC_POSITIONS_OPEN] == doc["runtime_diagnostics"]["exit_pipeline"]["open_positions_count"]
    # One identity: the document names the service as the host's telemetry does.
    assert (doc["service"]["name"], doc["service"]["instance_id"], doc["service"]["environment"]) == \
        ("desk-host", "host-7", "live")
    # The host's providers were neither shut down nor emptied.
    host.tracer_provider.get_tracer("host").start_span("after-run").end()
    assert host.spans.get_finished_spans()[-1].name == "after-run"
    assert host.counts()[sc.METRIC_EXIT_SCANS] == CYCLES


def test_run_when_host_owns_the_sdk_then_same_spans_and_metrics_as_otel_diags_own_path(tmp_path, host, repo_root):
    config = os.path.join(repo_root, "config", "strategy_config.json")
    own = in_memory_run(tmp_path / "own", config, CYCLES)  # before the host's providers become global
    trace.set_tracer_provider(host.tracer_provider)
    metrics.set_meter_provider(host.meter_provider)

    run(RunOptions(config_path=config, state_dir=str(tmp_path / "host"), cycles=CYCLES))

    assert span_keys(host.spans.get_finished_spans()) == span_keys(own.spans)
    assert point_values(host.reader.get_metrics_data()) == point_values(own.metrics)


def test_configure_when_disabled_instrumentations_lists_execution_then_nothing_patched(installed):
    telemetry = otel_diag.configure(env={"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "flask, execution"})

    assert not telemetry.instrumented and ExecutionInstrumentor.patched() == []
    telemetry.state.stamp(sc.EVENT_SIGNAL)  # what a decorator of the application's own still reports
    assert sc.EVENT_SIGNAL in telemetry.snapshot().last_event_times
