"""Auto-instrumentation: post-import hooks patch the engine whatever the import order, and
``opentelemetry-instrument python -m execution`` works through the entry point."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Sequence

import pytest

from otel_diag import semconv as sc
from otel_diag.default_targets import TARGETS
from tests.fixtures.config import shipped_config
from tests.fixtures.env import LOOPBACK, clean_env, free_port
from tests.fixtures.polling import wait_until
from tests.fixtures.replay import frozen, in_memory_run, point_values, span_keys

CYCLES = 5
ENGINE_MODULES = sorted({t.module for t in TARGETS})

# Runs in a fresh interpreter: configure() and the engine imports in the order asked for, then a
# short replay with run(instrument=False), so only the patches of this configure() are in force.
IMPORT_ORDER_PROBE = """
import json, sys
order, state_dir = sys.argv[1], sys.argv[2]

def configure():
    import otel_diag
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    exporter = InMemorySpanExporter()
    otel_diag.configure(span_processors=[SimpleSpanProcessor(exporter)], env={})
    return exporter

engine_before = sorted(m for m in sys.modules if m.startswith("execution"))
if order == "configure_first":
    exporter = configure()
    engine_at_configure = sorted(m for m in sys.modules if m.startswith("execution"))
    from execution.executor_live import RunOptions, run
else:
    from execution.executor_live import RunOptions, run
    import execution.engine
    engine_at_configure = sorted(m for m in sys.modules if m.startswith("execution"))
    exporter = configure()

import otel_diag
from otel_diag.instrumentor import ExecutionInstrumentor
patched = ExecutionInstrumentor.patched()
run(RunOptions(state_dir=state_dir, cycles=%d, instrument=False))
derived = otel_diag.current().snapshot()
print(json.dumps({
    "engine_before": engine_before,
    "engine_at_configure": engine_at_configure,
    "patched": patched,
    "spans": sorted({s.name for s in exporter.get_finished_spans()}),
    "cycles": sum(s.name == "executor.cycle" for s in exporter.get_finished_spans()),
    "exit_scans": derived.exit_scans,
}))
otel_diag.shutdown()
""" % CYCLES


@pytest.mark.parametrize("order", ["configure_first", "engine_first"])
def test_configure_when_engine_imported_before_or_after_then_engine_is_patched(tmp_path, repo_root, order):
    proc = subprocess.run([sys.executable, "-c", IMPORT_ORDER_PROBE, order, str(tmp_path)], cwd=repo_root,
                          capture_output=True, text=True, timeout=60, env=clean_env())

    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["engine_before"] == []
    if order == "configure_first":
        assert not set(ENGINE_MODULES) & set(seen["engine_at_configure"]), "the engine must not be imported yet"
    else:
        assert set(ENGINE_MODULES) <= set(seen["engine_at_configure"])
    assert sorted(seen["patched"]) == sorted(f"{t.module}.{t.name}" for t in TARGETS)
    assert seen["cycles"] == CYCLES and seen["exit_scans"] == CYCLES
    assert {sc.SPAN_EXECUTOR_CYCLE, sc.SPAN_SIGNAL_GENERATE, sc.SPAN_EXIT_SCAN} <= set(seen["spans"])


LAUNCHER = os.path.join(os.path.dirname(sys.executable), "opentelemetry-instrument")
SERVICE = "executor-auto"
AUTO_CYCLES = 40  # past the slow EMA's warm-up: signals, orders and fills happen
# Spans and metrics exported at exit only (no batch or interval falls due in a run), after the host's own lines:
# two threads writing stdout at once could interleave.
AT_EXIT_ONLY = {"OTEL_METRIC_EXPORT_INTERVAL": "600000", "OTEL_BSP_SCHEDULE_DELAY": "600000",
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2048"}


def _instrumented_run(tmp_path, repo_root, *args: str, launcher_args: Sequence[str] = (),
                      **env: str) -> subprocess.CompletedProcess:
    """``opentelemetry-instrument [launcher_args] -- python -m execution …`` as the README gives it, with the distro's
    configurator (``--`` ends the launcher's own options: without it, the launcher takes ``--config`` for an
    abbreviation of its ``--configurator``)."""
    assert os.path.exists(LAUNCHER), "opentelemetry-instrument is not installed: `make setup` installs the [auto] extra"
    run_env = {**clean_env(), "OTEL_LOGS_EXPORTER": "none", "OTEL_SERVICE_NAME": SERVICE, **env}
    return subprocess.run([LAUNCHER, *launcher_args, "--", sys.executable, "-m", "execution",
                           "--state-dir", str(tmp_path / "state"), *args],
                          cwd=repo_root, capture_output=True, text=True, timeout=120, env=run_env)


def _printed_objects(stdout: str) -> List[Dict[str, Any]]:
    """Every JSON object the console exporters printed (each starts at the beginning of a line)."""
    decoder = json.JSONDecoder()
    found: List[Dict[str, Any]] = []
    after = 0
    for match in re.finditer(r"^\{", stdout, re.MULTILINE):
        if match.start() < after:  # inside an object already read
            continue
        try:
            obj, after = decoder.raw_decode(stdout, match.start())
        except json.JSONDecodeError:
            continue
        found.append(obj)
    return found


def _printed_span_keys(spans: List[Dict[str, Any]]) -> Counter:
    """Printed spans as :func:`tests.fixtures.replay.span_keys` reduces SDK spans."""
    by_id = {s["context"]["span_id"]: s for s in spans}
    return Counter((s["name"], by_id[s["parent_id"]]["name"] if s["parent_id"] else None, frozen(s["attributes"]))
                   for s in spans)


def _printed_point_values(export: Dict[str, Any]) -> Dict[Any, Any]:
    """A printed metrics export as :func:`tests.fixtures.replay.point_values` reduces a collection."""
    return {(m["name"], frozen(p["attributes"])): p["value"] for rm in export["resource_metrics"]
            for sm in rm["scope_metrics"] if sm["scope"]["name"] == sc.INSTRUMENTATION_NAME
            for m in sm["metrics"] for p in m["data"]["data_points"]}


def _points(exports: List[Dict[str, Any]], name: str) -> List[Dict[str, Any]]:
    """The data points of metric ``name`` in the last console metrics export."""
    last = exports[-1]
    return [p for rm in last["resource_metrics"] for sm in rm["scope_metrics"] for m in sm["metrics"]
            if m["name"] == name for p in m["data"]["data_points"]]


def test_opentelemetry_instrument_when_console_exporters_then_spans_metrics_and_state_share_one_identity(
        tmp_path, repo_root):
    # Spans and metrics are printed at exit only, after the executor's own lines (AT_EXIT_ONLY).
    proc = _instrumented_run(tmp_path, repo_root, "--cycles", str(AUTO_CYCLES),
                             launcher_args=("--traces_exporter", "console", "--metrics_exporter", "console"),
                             **AT_EXIT_ONLY)

    assert proc.returncode == 0, proc.stderr
    printed = _printed_objects(proc.stdout)
    spans = [o for o in printed if "context" in o and "name" in o]
    exports = [o for o in printed if "resource_metrics" in o]
    assert sum(s["name"] == sc.SPAN_EXECUTOR_CYCLE for s in spans) == AUTO_CYCLES
    assert exports, "the distro's metrics exporter printed nothing at exit"
    doc = json.loads((tmp_path / "state" / "diagnostics.json").read_text())
    # The final export at process exit, after otel_diag.shutdown(), still carries the run's totals.
    assert [p["value"] for p in _points(exports, sc.METRIC_EXIT_SCANS)] == [AUTO_CYCLES]
    signals = sum(p["value"] for p in _points(exports, sc.METRIC_SIGNALS))
    assert signals == doc["runtime_diagnostics"]["veto_counters"]["total_signals"] > 0
    # One identity: traces, metrics and diagnostics.json.
    identities = {(s["resource"]["attributes"]["service.name"], s["resource"]["attributes"]["service.instance.id"])
                  for s in spans}
    identities |= {(rm["resource"]["attributes"]["service.name"], rm["resource"]["attributes"]["service.instance.id"])
                   for e in exports for rm in e["resource_metrics"]}
    assert identities == {(doc["service"]["name"], doc["service"]["instance_id"])}
    assert doc["service"]["name"] == SERVICE
    assert doc["runtime_diagnostics"]["exit_pipeline"]["total_exit_scans"] == AUTO_CYCLES
    assert doc["runtime_diagnostics"]["liveness"]["last_trace_ids"]["exit_scans"] in {
        s["context"]["trace_id"].removeprefix("0x") for s in spans}
    # The same spans and metrics as otel_diag's own path, same seed and config.
    own = in_memory_run(tmp_path / "own", str(Path(repo_root) / "config" / "strategy_config.json"), AUTO_CYCLES)
    assert _printed_span_keys(spans) == span_keys(own.spans)
    assert _printed_point_values(exports[-1]) == point_values(own.metrics)


def test_opentelemetry_instrument_when_prometheus_exporter_and_configured_port_then_one_endpoint_serves(
        tmp_path, repo_root):
    port = free_port()
    # the same port the host's exporter takes
    config_path = shipped_config(tmp_path, telemetry={"prometheus_port": port})
    scrapes: List[str] = []

    def scrape() -> bool:
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=5) as response:
                scrapes.append(response.read().decode())
        except OSError:
            return False
        return "trading_exit_scans_total" in scrapes[-1]

    proc = subprocess.Popen([LAUNCHER, "--", sys.executable, "-m", "execution", "--state-dir", str(tmp_path / "state"),
                             "--config", config_path, "--pace", "realtime", "--bar-interval", "0.05",
                             "--cycles", "400"], cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**clean_env(), "OTEL_LOGS_EXPORTER": "none", "OTEL_TRACES_EXPORTER": "none",
                                            "OTEL_METRICS_EXPORTER": "prometheus", "OTEL_SERVICE_NAME": SERVICE,
                                            "OTEL_EXPORTER_PROMETHEUS_HOST": LOOPBACK,
                                            "OTEL_EXPORTER_PROMETHEUS_PORT": str(port)})
    try:
        seen = wait_until(scrape, 60, interval=0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)

    assert seen, f"no trading metrics at the host's endpoint; stderr: {stderr[-2000:]}"
    assert proc.returncode == 0, stderr
    assert "Address already in use" not in stderr and "prometheus_port" not in stderr
    assert f'service_name="{SERVICE}"' in scrapes[-1] or f'job="{SERVICE}"' in scrapes[-1]


def test_opentelemetry_instrument_when_execution_disabled_then_engine_not_patched(tmp_path, repo_root):
    proc = _instrumented_run(tmp_path, repo_root, "--cycles", str(CYCLES), OTEL_TRACES_EXPORTER="console",
                             OTEL_METRICS_EXPORTER="none", OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="execution")

    assert proc.returncode == 0, proc.stderr
    assert sc.SPAN_EXECUTOR_CYCLE not in proc.stdout and f"bars: {CYCLES}" in proc.stdout
    doc = json.loads((tmp_path / "state" / "diagnostics.json").read_text())
    assert doc["runtime_diagnostics"]["exit_pipeline"]["total_exit_scans"] == 0


# A host with no otel_diag call of its own: backtrader and the example strategy, nothing else.
BACKTRADER_HOST = "from examples.backtrader.run import run; run(bars=60)"


def test_opentelemetry_instrument_when_otel_diag_targets_names_a_table_then_that_engine_is_traced(repo_root):
    # Arrange: the launcher finds the instrumentor by its entry point; OTEL_DIAG_TARGETS gives it backtrader's table
    env = {**clean_env(), "OTEL_LOGS_EXPORTER": "none", "OTEL_SERVICE_NAME": "backtrader-auto",
           "OTEL_DIAG_TARGETS": "examples.backtrader.targets:TARGETS", **AT_EXIT_ONLY}

    proc = subprocess.run([LAUNCHER, "--traces_exporter", "console", "--metrics_exporter", "console", "--",
                           sys.executable, "-c", BACKTRADER_HOST], cwd=repo_root, capture_output=True, text=True,
                          timeout=120, env=env)

    assert proc.returncode == 0, proc.stderr
    assert "otel_diag" not in proc.stderr, "every row of the table should resolve"
    printed = _printed_objects(proc.stdout)
    names = Counter(o["name"] for o in printed if "context" in o and "name" in o)
    assert {"strategy.entry_signal", "strategy.risk_check", "strategy.buy", "broker.submit", "order.execute",
            "broker.next", "broker.execute"} <= set(names), names
    assert names["broker.next"] == 60  # the broker's pass runs once a bar
    exports = [o for o in printed if "resource_metrics" in o]
    orders = {p["attributes"]["trading.symbol"]: p["value"] for p in _points(exports, sc.METRIC_ORDERS)}
    assert set(orders) <= {"BTCUSD", "ETHUSD", "SOLUSD"} and sum(orders.values()) == names["strategy.buy"] + \
        names["strategy.sell"]
    assert [p["value"] for p in _points(exports, sc.METRIC_EXIT_SCANS)] == [60]
    # the coverage adapter ran at the broker's pass: every open position has its stop
    assert [p["value"] for p in _points(exports, sc.METRIC_TP_SL_MISSING)] == [0]
    assert len(_points(exports, sc.METRIC_POSITIONS_OPEN)) == 1
