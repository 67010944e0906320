"""Exporters down: a collector that is absent, hung or refusing costs nothing but lost telemetry.

Three broken collectors, each on 127.0.0.1 and torn down with the module (tests/fixtures/collectors.py):

- **closed**: a port nothing listens on (connections refused at once);
- **silent**: a socket that accepts and never answers (a hung collector, a black-holed proxy);
- **refusing**: an HTTP server that answers 503 to everything (the exporter retries with backoff).

For each, a replay runs through ``execution.executor_live.run`` with the OTLP exporters pointed
there and short export intervals (spans every 100 ms, metrics every 200 ms), so the exporters
fail during the loop. What is asserted is functional: every bar traded, the same journal as the
same pipeline with exporters that drop locally, no telemetry error swallowed, shutdown returns
while the collector still hangs, and no exporter thread is left to send after it. No test here bounds or
compares a duration or reads a clock: a wait for the collector is a wait on its count of connections or
requests (``Tally``), and pytest-timeout (pyproject.toml) is the only guard against a hang. What a
broken collector costs in time — p99 per cycle against that pipeline, how long shutdown takes (and that it
gave up at its bound rather than flushing), when the exporter threads end and how many requests still
follow shutdown — is measured by ``make bench``
(tests/benchmarks/bench_exporters.py): timings are not a test on a shared 2-core machine.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from typing import Dict, List

import pytest

from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import otel_diag
from tests.fixtures.collectors import BROKEN, FAST_EXPORT_ENV, BrokenCollectors, DropMetrics, DropSpans, end_spans
from tests.fixtures.env import clean_env
from tests.fixtures.replay import quiet_config_file, traced_replay

CYCLES = 1_000
T0 = 1_767_571_200.0  # the clock events are stamped with: no test here reads the time
SHORT_SHUTDOWN_MILLIS = 300    # the bound used inside the runs (the default one is exercised below)


@pytest.fixture(scope="module")
def collectors():
    """endpoint per broken collector: closed port, silent socket, 503 server (and the servers)."""
    with BrokenCollectors() as down:
        yield {**down.endpoints, "_servers": (down.silent, down.refusing)}


@pytest.fixture
def fast_exports(monkeypatch):
    """The SDK's batch span processor and periodic metric reader read these from os.environ."""
    for name, value in FAST_EXPORT_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def quiet_config(tmp_path) -> str:
    """The shipped config publishing diagnostics.json only at the start and the end."""
    return quiet_config_file(tmp_path)


@pytest.fixture
def shutdowns(bounded_shutdowns) -> list:
    """run() calls ``otel_diag.shutdown()``; give it the short bound and record whether each call flushed."""
    return bounded_shutdowns(SHORT_SHUTDOWN_MILLIS)


def replay(state_dir, config_path: str, env: Dict[str, str]):
    """One replay; (summary, exporters in force, journal bytes).

    With no OTLP endpoint in ``env`` the same pipeline runs with exporters that drop locally.
    """
    local = {} if env else {"span_processors": [BatchSpanProcessor(DropSpans())],
                            "metric_readers": [PeriodicExportingMetricReader(DropMetrics())]}
    done = traced_replay(state_dir, config_path, env, CYCLES, **local)
    return done.summary, done.exporters, done.journal


def test_replay_when_collector_closed_silent_or_refusing_then_trades_the_same_and_shutdown_returns(
        tmp_path, collectors, fast_exports, quiet_config, shutdowns, caplog):
    # Arrange
    silent, refusing = collectors["_servers"]
    accepted_before, requests_before = silent.accepted, refusing.requests
    arms = {"baseline": {}, **{name: {"OTEL_EXPORTER_OTLP_ENDPOINT": collectors[name]} for name in BROKEN}}
    journals = set()

    # Act + Assert: every bar traded whatever the collector does
    for arm, env in arms.items():
        summary, exporters, journal = replay(tmp_path / arm, quiet_config, env)
        assert summary.cycles == CYCLES, arm
        assert ("otlp-traces" in exporters and "otlp-metrics" in exporters) == (arm != "baseline"), arm
        journals.add(journal)

    # Assert
    assert silent.accepted > accepted_before, "the exporters never reached the silent collector"
    assert refusing.requests > requests_before, "the exporters never reached the refusing collector"
    assert len(journals) == 1, "a broken collector changed what the engine traded"
    wrapper_errors = [r.getMessage() for r in caplog.records
                      if r.name.startswith("otel_diag") and "did not flush" not in r.getMessage()]
    assert wrapper_errors == []  # no telemetry error was swallowed on the way either
    assert len(shutdowns) == len(arms)  # every run shut its telemetry down and returned


def _clock() -> float:
    return T0


# -- shutdown: bounded, and nothing left running -------------------------------------------------------
def _connect_refused(address) -> bool:
    try:
        socket.create_connection(address).close()  # loopback: refused or accepted at once
    except OSError:
        return True
    return False


def test_shutdown_when_collector_hangs_mid_export_then_returns_and_prometheus_endpoint_is_closed(collectors):
    # Arrange: the span exporter is blocked in a request the silent collector never answers
    silent = collectors["_servers"][0]
    accepted_before = silent.accepted
    telemetry = otel_diag.configure(clock=_clock, prometheus_port=0,
                                    env={"OTEL_EXPORTER_OTLP_ENDPOINT": collectors["silent"]})
    address = telemetry.prometheus_address
    end_spans(1_000)  # more than one batch (512): the worker exports at once
    silent.connections.wait_beyond(accepted_before)  # the exporter connected

    # Act: its bound is what lets it return (how long it takes against that bound is make bench's)
    otel_diag.shutdown(timeout_millis=1_000)

    # Assert: it returned although the collector never answers the request in flight
    assert _connect_refused(address), "the Prometheus endpoint still listens after shutdown() returned"


def _otel_threads(before) -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t not in before and t.name.startswith("Otel")]


def test_shutdown_when_collector_refuses_then_exporter_threads_end_and_none_is_left_to_send(collectors):
    # Arrange: the exporters retry a 503 with backoff (1 s, 2 s, 4 s … up to their 10 s timeout)
    refusing = collectors["_servers"][1]
    requests_before = refusing.requests
    before = set(threading.enumerate())
    otel_diag.configure(clock=_clock, env={"OTEL_EXPORTER_OTLP_ENDPOINT": collectors["refusing"]})
    exporter_threads = _otel_threads(before)
    end_spans(1_000)
    refusing.tally.wait_beyond(requests_before)  # the exporter reached the collector

    # Act: the threads end (pytest-timeout guards a hang; how soon, and how many requests follow shutdown(),
    # is make bench's: tests/benchmarks/bench_exporters.py)
    otel_diag.shutdown(timeout_millis=SHORT_SHUTDOWN_MILLIS)
    for thread in exporter_threads:
        thread.join()

    # Assert: the batch span processor's and the periodic metric reader's threads, and no other telemetry thread
    # left that could still send
    assert len(exporter_threads) == 2
    assert _otel_threads(before) == []


def test_spans_when_queue_full_because_collector_down_then_trading_thread_builds_no_log_record_per_drop(collectors):
    # Arrange: a handler that sees every record the SDK's batch processor logger lets through
    import logging

    records: List[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(level=logging.DEBUG)
    logger = logging.getLogger("opentelemetry.sdk._shared_internal")
    logger.addHandler(handler)
    saved_level = logger.level
    logger.setLevel(logging.NOTSET)
    try:
        otel_diag.configure(clock=_clock, env={"OTEL_EXPORTER_OTLP_ENDPOINT": collectors["closed"]})

        # Act: far more spans than the queue holds (2048) while the exporter is failing
        end_spans(6_000)

        # Assert
        assert not [r for r in records if "Queue full" in r.getMessage()]
        assert logger.level == logging.ERROR  # errors of the batch processor still show
    finally:
        otel_diag.shutdown(timeout_millis=SHORT_SHUTDOWN_MILLIS)
        logger.removeHandler(handler)
        logger.setLevel(saved_level)


def test_configure_when_application_set_batch_logger_level_then_left_alone(collectors):
    import logging

    logger = logging.getLogger("opentelemetry.sdk._shared_internal")
    saved_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        otel_diag.configure(clock=_clock, env={"OTEL_EXPORTER_OTLP_ENDPOINT": collectors["closed"]})
        assert logger.level == logging.INFO
    finally:
        otel_diag.shutdown(timeout_millis=SHORT_SHUTDOWN_MILLIS)
        logger.setLevel(saved_level)


# -- the executor end to end, with the default shutdown bound -------------------------------------------
def test_executor_cli_when_collector_closed_silent_refusing_or_grpc_closed_then_exit_0_same_trades_and_exits(
        tmp_path, collectors, repo_root):
    # Arrange: one process per collector, run side by side, plus one with telemetry but no exporter
    # and one without telemetry at all (the trades to compare with)
    env_base = clean_env(**FAST_EXPORT_ENV)
    arms = {
        "none": ["--no-instrument"], "no_exporter": [],
        "closed": [], "silent": [], "refusing": [], "grpc_closed": [],
    }
    endpoints = {"closed": collectors["closed"], "silent": collectors["silent"],
                 "refusing": collectors["refusing"], "grpc_closed": collectors["closed"]}
    procs = {}
    for arm, extra in arms.items():
        env = dict(env_base)
        if arm in endpoints:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoints[arm]
        if arm == "grpc_closed":
            env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc"
        cmd = [sys.executable, "-m", "execution", "--cycles", "150", "--state-dir", str(tmp_path / arm), *extra]
        procs[arm] = subprocess.Popen(cmd, cwd=repo_root, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)

    # Act: each exits (how long a broken collector delays the exit is make bench's to measure)
    results = {}
    for arm, proc in procs.items():
        out, err = proc.communicate()
        results[arm] = (proc.returncode, out, err)

    # Assert
    journals = set()
    for arm, (code, out, err) in results.items():
        assert code == 0, (arm, err[-2000:])
        assert "Traceback" not in err, (arm, err[-2000:])
        journals.add((tmp_path / arm / "journal.jsonl").read_bytes())
        doc = json.loads((tmp_path / arm / "diagnostics.json").read_text()) if arm != "none" else None
        assert doc is None or doc["service"]["state"] == "stopped"
    assert len(journals) == 1, "a broken collector changed what the engine traded"
