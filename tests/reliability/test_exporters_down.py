"""Exporters down: a collector that is absent, hung or refusing costs nothing but lost telemetry.

Three broken collectors, each on 127.0.0.1 and torn down with the module:

- **closed**: a port nothing listens on (connections refused at once);
- **silent**: a socket that accepts and never answers (a hung collector, a black-holed proxy);
- **refusing**: an HTTP server that answers 503 to everything (the exporter retries with backoff).

For each, a replay runs through ``execution.executor_live.run`` with the OTLP exporters pointed
there and short export intervals (spans every 100 ms, metrics every 200 ms), so the exporters
fail during the timed loop. The baseline is the same pipeline — tracing on, a BatchSpanProcessor
and a PeriodicExportingMetricReader on the same intervals — whose exporters drop everything
locally at once: the arms differ only in what a broken network does to the exporters. (The
pipeline's own cost, ≈ 15 spans a cycle handed to the batch queue on the trading thread, is the
benchmarks' subject: docs/benchmarks.md.) Runs of the four arms are interleaved; each arm is
summarised by the median of its runs' p99 cycle times, so load from elsewhere on a small machine
hits every arm alike or is voted out.
"""
from __future__ import annotations

import json
import math
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Tuple

import pytest

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import otel_diag
from tests.fixtures.replay import traced_replay

LOOPBACK = "127.0.0.1"
CYCLES = 2000
WARMUP_CYCLES = 500            # not timed: imports, caches and the exporters' first failed export settle
REPS = 3                       # runs per arm per round (the median of their p99s is compared)
MAX_EXTRA_ROUNDS = 2           # more rounds before judging, when a noisy neighbour spoiled one
MAX_P99_RATIO = 1.20           # the bound: p99 at most 20% above the run with no (network) exporter
P99_EPSILON_SECONDS = 0.15e-3  # absolute slack: scheduler and timer noise of one cycle on a shared VM
SHORT_SHUTDOWN_MILLIS = 300    # the bound used inside the timed runs (the default one is measured below)
SHUTDOWN_SLACK_SECONDS = 0.25
FAST_EXPORT_ENV = {"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_METRIC_EXPORT_INTERVAL": "200"}


# -- broken collectors ------------------------------------------------------------------------------
class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never answers; ``stop()`` closes every socket."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((LOOPBACK, 0))
        self._sock.listen(128)
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self.accepted = 0
        self._conns: List[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="silent-collector", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():  # one bounded accept (50 ms) per turn, until stop()
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            self._conns.append(conn)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self._conns:
            conn.close()
        self._sock.close()


class RefusingServer:
    """Answers HTTP 503 to every request, on 127.0.0.1."""

    def __init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _refuse(self) -> None:
                length = min(int(self.headers.get("Content-Length") or 0), 64 * 1024 * 1024)
                self.rfile.read(length)
                server.requests += 1
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET = do_PUT = _refuse  # noqa: N815 (http.server's names)

            def log_message(self, fmt: str, *args: object) -> None:
                pass

        self.requests = 0
        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="refusing-collector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(2)


@pytest.fixture(scope="module")
def collectors():
    """endpoint per broken collector: closed port, silent socket, 503 server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        closed_port = s.getsockname()[1]
    silent, refusing = SilentServer(), RefusingServer()
    yield {
        "closed": f"http://{LOOPBACK}:{closed_port}",
        "silent": f"http://{LOOPBACK}:{silent.port}",
        "refusing": f"http://{LOOPBACK}:{refusing.port}",
        "_servers": (silent, refusing),
    }
    silent.stop()
    refusing.stop()


@pytest.fixture
def fast_exports(monkeypatch):
    """The SDK's batch span processor and periodic metric reader read these from os.environ."""
    for name, value in FAST_EXPORT_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def quiet_config(tmp_path, repo_root) -> str:
    """The shipped config publishing diagnostics.json only at the start and the end: the timed loop
    then measures trading and telemetry, not fsync latency (the disk-error tests cover publishing)."""
    with open(os.path.join(repo_root, "config", "strategy_config.json"), encoding="utf-8") as fh:
        cfg = json.load(fh)
    cfg["diagnostics"]["publish_interval_seconds"] = 10 ** 9
    path = tmp_path / "strategy_config.json"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return str(path)


@pytest.fixture
def shutdowns(bounded_shutdowns) -> list:
    """run() calls ``otel_diag.shutdown()``; give it the short bound and record (flushed, seconds)."""
    return bounded_shutdowns(SHORT_SHUTDOWN_MILLIS)


# -- measuring --------------------------------------------------------------------------------------
def p99(samples: List[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


class _DropSpans(SpanExporter):
    def export(self, spans):
        return SpanExportResult.SUCCESS


class _DropMetrics(MetricExporter):
    def __init__(self) -> None:
        super().__init__()

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs):
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        pass


def timed_replay(state_dir, config_path: str, env: Dict[str, str]):
    """One replay; (p99 seconds per cycle, summary, exporters in force, journal bytes).

    With no OTLP endpoint in ``env`` the same pipeline runs with exporters that drop locally.
    """
    local = {} if env else {"span_processors": [BatchSpanProcessor(_DropSpans())],
                            "metric_readers": [PeriodicExportingMetricReader(_DropMetrics())]}
    timed = traced_replay(state_dir, config_path, env, CYCLES, **local)
    return p99(timed.intervals[WARMUP_CYCLES:]), timed.summary, timed.exporters, timed.journal


def test_replay_when_collector_closed_silent_or_refusing_then_runs_on_p99_within_20pct_and_shutdown_bounded(
        tmp_path, collectors, fast_exports, quiet_config, shutdowns, caplog):
    # Arrange
    arms = {"baseline": {}, **{name: {"OTEL_EXPORTER_OTLP_ENDPOINT": collectors[name]}
                                for name in ("closed", "silent", "refusing")}}
    p99s: Dict[str, List[float]] = {arm: [] for arm in arms}
    journals = set()

    def measure_round(round_no: int) -> None:
        names = list(arms)
        for rep in range(REPS):
            shift = rep % len(names)  # rotate the order so no arm always runs right after another
            for arm in names[shift:] + names[:shift]:
                value, summary, exporters, journal = timed_replay(tmp_path / f"{arm}-{round_no}-{rep}",
                                                                  quiet_config, arms[arm])
                assert summary.cycles == CYCLES
                assert ("otlp-traces" in exporters and "otlp-metrics" in exporters) == (arm != "baseline")
                p99s[arm].append(value)
                journals.add(journal)

    def verdicts() -> Dict[str, Tuple[float, bool]]:
        base = statistics.median(p99s["baseline"])
        out = {}
        for arm in ("closed", "silent", "refusing"):
            value = statistics.median(p99s[arm])
            out[arm] = (value / base, value <= MAX_P99_RATIO * base + P99_EPSILON_SECONDS)
        return out

    # Act
    measure_round(0)
    for extra in range(1, MAX_EXTRA_ROUNDS + 1):
        if all(ok for _, ok in verdicts().values()):
            break
        measure_round(extra)

    # Assert
    report = "median p99 per cycle (ms): " + ", ".join(
        f"{arm} {statistics.median(v) * 1e3:.3f} {[round(x * 1e3, 2) for x in v]}" for arm, v in p99s.items())
    report += " | ratios: " + ", ".join(f"{arm} {ratio:.3f}" for arm, (ratio, _) in verdicts().items())
    report += f" | shutdown max {max(s for _, s in shutdowns) * 1e3:.0f} ms (bound {SHORT_SHUTDOWN_MILLIS} ms)"
    print(report)
    assert all(ok for _, ok in verdicts().values()), report
    assert len(journals) == 1, "a broken collector changed what the engine traded"
    wrapper_errors = [r.getMessage() for r in caplog.records
                      if r.name.startswith("otel_diag") and "did not flush" not in r.getMessage()]
    assert wrapper_errors == []  # no telemetry error was swallowed on the way either
    assert len(shutdowns) == sum(len(v) for v in p99s.values())
    assert all(seconds <= SHORT_SHUTDOWN_MILLIS / 1000 + SHUTDOWN_SLACK_SECONDS for _, seconds in shutdowns), shutdowns


# -- shutdown: bounded, and nothing left running -------------------------------------------------------
def _spans(n: int) -> None:
    """End ``n`` spans through the real wrappers (a decorated function, as user code would)."""
    traced = otel_diag.traced_event("reliability.probe", event="signal", counter="trading.signals")(lambda i: i)
    for i in range(n):
        traced(i)


def _wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # bounded wait, polling
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def _connect_refused(address) -> bool:
    try:
        socket.create_connection(address, timeout=0.5).close()
    except OSError:
        return True
    return False


def test_shutdown_when_collector_hangs_mid_export_then_returns_in_bound_and_prometheus_endpoint_is_closed(collectors):
    # Arrange: the span exporter is blocked in a request the silent collector never answers
    silent = collectors["_servers"][0]
    accepted_before = silent.accepted
    telemetry = otel_diag.configure(clock=time.time, prometheus_port=0,
                                    env={"OTEL_EXPORTER_OTLP_ENDPOINT": collectors["silent"]})
    address = telemetry.prometheus_address
    _spans(1_000)  # more than one batch (512): the worker exports at once
    assert _wait_until(lambda: silent.accepted > accepted_before, 5), "the exporter never connected"

    # Act
    started = time.monotonic()
    flushed = otel_diag.shutdown(timeout_millis=1_000)
    took = time.monotonic() - started

    # Assert
    print(f"shutdown with a hung collector: {took * 1e3:.0f} ms (bound 1000 ms), flushed={flushed}")
    assert not flushed
    assert took <= 1.0 + SHUTDOWN_SLACK_SECONDS
    assert _connect_refused(address), "the Prometheus endpoint still listens after shutdown() returned"


@pytest.mark.parametrize("collector", ["closed", "refusing"])
def test_shutdown_when_collector_refuses_then_exporter_threads_end_instead_of_retrying_on(collectors, collector):
    # Arrange
    before = set(threading.enumerate())
    otel_diag.configure(clock=time.time, env={"OTEL_EXPORTER_OTLP_ENDPOINT": collectors[collector]})
    exporter_threads = [t for t in threading.enumerate() if t not in before and t.name.startswith("Otel")]
    _spans(1_000)
    time.sleep(0.2)  # let the first export fail and back off

    # Act
    flushed = otel_diag.shutdown(timeout_millis=SHORT_SHUTDOWN_MILLIS)

    # Assert: the final flush could not succeed; what was retrying stops within a moment, not in 5-10 s
    assert not flushed
    assert len(exporter_threads) == 2  # the batch span processor's and the periodic metric reader's
    assert _wait_until(lambda: not any(t.is_alive() for t in exporter_threads), 1.0), \
        [t.name for t in exporter_threads if t.is_alive()]


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
        otel_diag.configure(clock=time.time, env={"OTEL_EXPORTER_OTLP_ENDPOINT": collectors["closed"]})

        # Act: far more spans than the queue holds (2048) while the exporter is failing
        _spans(6_000)

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
        otel_diag.configure(clock=time.time, env={"OTEL_EXPORTER_OTLP_ENDPOINT": collectors["closed"]})
        assert logger.level == logging.INFO
    finally:
        otel_diag.shutdown(timeout_millis=SHORT_SHUTDOWN_MILLIS)
        logger.setLevel(saved_level)


# -- the executor end to end, with the default shutdown bound -------------------------------------------
def test_executor_cli_when_collector_closed_silent_refusing_or_grpc_closed_then_exit_0_same_trades_bounded_exit(
        tmp_path, collectors, repo_root):
    # Arrange: one process per collector, run side by side, plus one with telemetry but no exporter
    # (the timing baseline) and one without telemetry at all (the trades to compare with)
    from otel_diag.sdk import DEFAULT_SHUTDOWN_TIMEOUT_MILLIS

    env_base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env_base.update(FAST_EXPORT_ENV)
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
        procs[arm] = (time.monotonic(), subprocess.Popen(cmd, cwd=repo_root, env=env, stdout=subprocess.PIPE,
                                                          stderr=subprocess.PIPE, text=True))

    # Act
    elapsed, results = {}, {}
    for arm, (started, proc) in procs.items():
        out, err = proc.communicate(timeout=60)
        elapsed[arm] = time.monotonic() - started
        results[arm] = (proc.returncode, out, err)

    # Assert
    bound = DEFAULT_SHUTDOWN_TIMEOUT_MILLIS / 1000
    print("executor wall seconds: " + ", ".join(f"{arm} {s:.2f}" for arm, s in elapsed.items())
          + f" (shutdown bound {bound:.0f} s)")
    journals = set()
    for arm, (code, out, err) in results.items():
        assert code == 0, (arm, err[-2000:])
        assert "Traceback" not in err, (arm, err[-2000:])
        journals.add((tmp_path / arm / "journal.jsonl").read_bytes())
        doc = json.loads((tmp_path / arm / "diagnostics.json").read_text()) if arm != "none" else None
        assert doc is None or doc["service"]["state"] == "stopped"
        assert arm not in endpoints or elapsed[arm] <= elapsed["no_exporter"] + bound + 2.0, (arm, elapsed)
    assert len(journals) == 1, "a broken collector changed what the engine traded"
