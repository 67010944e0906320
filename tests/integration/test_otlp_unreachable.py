"""A collector that is down costs nothing but lost telemetry: no exception, the same trades, bounded shutdown.

The OTLP exporters export off the trading thread (BatchSpanProcessor's worker, the
PeriodicExportingMetricReader's timer); the loop only hands finished spans to a queue.
Arms: ``baseline`` (tracing with no span processor at all), ``healthy`` (a BatchSpanProcessor
whose exporter succeeds at once: a collector that is up) and ``down`` (OTLP to a port nothing
listens on). What the down collector costs per cycle against the healthy one is a ratio that
``make bench`` measures (tests/benchmarks/bench_exporters.py); this test holds what must never
change: every bar traded, one journal, shutdown returns (a bounded wait, no clock read).
"""
from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import otel_diag
from tests.fixtures.collectors import DropSpans
from tests.fixtures.env import free_port
from tests.fixtures.replay import quiet_config_file, traced_replay

CYCLES = 200
SHUTDOWN_BOUND_MILLIS = 500


@pytest.fixture
def closed_port() -> int:
    return free_port()


@pytest.fixture
def shutdowns(bounded_shutdowns) -> list:
    """run() calls otel_diag.shutdown(); bound it, and record whether each call flushed."""
    return bounded_shutdowns(SHUTDOWN_BOUND_MILLIS)


def test_replay_when_otlp_endpoint_refuses_then_no_error_same_trades_and_shutdown_returns(
        tmp_path, closed_port, shutdowns):
    # Arrange
    config = quiet_config_file(tmp_path)
    down = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port}"}
    arms = {
        "baseline": ({}, ()),
        "healthy": ({}, (BatchSpanProcessor(DropSpans()),)),
        "down": (down, ()),
    }
    journals = set()

    # Act + Assert
    for arm, (env, processors) in arms.items():
        done = traced_replay(tmp_path / arm, config, env, CYCLES, span_processors=list(processors))
        assert done.summary.cycles == CYCLES, arm
        assert ("otlp-traces" in done.exporters and "otlp-metrics" in done.exporters) == (arm == "down")
        journals.add(done.journal)

    assert len(journals) == 1, "an exporter changed what the engine did"
    assert len(shutdowns) == len(arms)  # every run shut its telemetry down and returned


def test_configure_when_otlp_endpoint_refuses_then_events_still_count_and_shutdown_returns(closed_port):
    telemetry = otel_diag.configure(clock=lambda: 1_767_571_200.0,
                                    env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port}"})
    signal = otel_diag.traced_event("user.signal", event="signal", counter="trading.signals")(lambda: "ok")

    assert [signal() for _ in range(3)] == ["ok"] * 3
    assert telemetry.snapshot().total_signals == 3

    otel_diag.shutdown(timeout_millis=SHUTDOWN_BOUND_MILLIS)  # returns (a hang is pytest-timeout's to catch)
