"""Auto-instrumentation: post-import hooks patch the engine whatever the import order, and
``opentelemetry-instrument python -m execution`` works through the entry point."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from otel_diag import semconv as sc
from otel_diag.targets import TARGETS
from tests.fixtures.env import clean_env

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


def test_opentelemetry_instrument_when_console_exporter_then_cycles_printed_and_state_written(tmp_path, repo_root):
    launcher = os.path.join(os.path.dirname(sys.executable), "opentelemetry-instrument")
    if not os.path.exists(launcher):
        pytest.skip("opentelemetry-instrument is not installed beside this interpreter")
    state_dir = tmp_path / "state"
    env = {**clean_env(), "OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none",
           "OTEL_LOGS_EXPORTER": "none"}

    proc = subprocess.run([launcher, sys.executable, "-m", "execution", "--cycles", str(CYCLES),
                           "--state-dir", str(state_dir)],
                          cwd=repo_root, capture_output=True, text=True, timeout=120, env=env)

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(f'"name": "{sc.SPAN_EXECUTOR_CYCLE}"') == CYCLES
    assert f'"name": "{sc.SPAN_EXIT_SCAN}"' in proc.stdout
    assert f"bars: {CYCLES}" in proc.stdout
    doc = json.loads((state_dir / "diagnostics.json").read_text())
    assert doc["service"]["name"] == "executor"
    assert doc["runtime_diagnostics"]["exit_pipeline"]["total_exit_scans"] == CYCLES
    assert doc["runtime_diagnostics"]["liveness"]["last_trace_ids"]["exit_scans"]
