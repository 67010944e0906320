"""Cardinality: unbounded symbols and reasons are capped, the overflow shows, memory stays bounded.

Values here are unbounded on purpose — a veto reason carrying its figures
(``"notional_exceeds: notional=1234.5"``), a symbol per contract expiry — and go through the real
wrappers (the patch table's ``risk.check``, ``signal.generate`` and ``exit.trigger`` specs around
stand-in functions returning the engine's result types). ``EventState.max_series_per_metric``
(default 2000) caps each metric's series; later values fold into one series marked
``otel.metric.overflow=true``, which the diagnostics block shows as ``"_other"`` with
``veto_counters.overflow = true``. Totals stay exact.
"""
from __future__ import annotations

import gc
import json
import tracemalloc
from types import SimpleNamespace

import wrapt
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import otel_diag
from dashboard import risk_panel
from execution.config import AppConfig, LivenessConfig
from execution.models import RiskDecision, Side, Signal
from execution.state_publish import DiagnosticsPublisher, write_runtime_diagnostics_state
from execution.state_v7 import load_runtime_diagnostics_state
from otel_diag import semconv as sc
from otel_diag.reader import OTHER
from otel_diag.state import DEFAULT_MAX_SERIES_PER_METRIC
from otel_diag.default_targets import TARGETS
from otel_diag.wrappers import ACTIVE, make_wrapper

START = 1_767_571_200.0


def _wrapped(span_name: str, fn):
    spec = next(t.spec for t in TARGETS if t.spec.span_name == span_name)
    return wrapt.FunctionWrapper(fn, make_wrapper(spec, ACTIVE))


def _veto(i: int) -> RiskDecision:
    return RiskDecision(signal=Signal(f"SYM{i % 37}", Side.BUY, 100.0, START, 1.0, 0.01), approved=False,
                        reason=f"notional_exceeds: notional={i}.5")


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


def test_vetoes_when_reasons_unbounded_then_capped_overflow_in_block_totals_exact(tmp_path):
    # Arrange
    sdk_reader = InMemoryMetricReader()
    telemetry = otel_diag.configure(clock=lambda: START, env={}, metric_readers=[sdk_reader], tracing=False)
    risk_check = _wrapped(sc.SPAN_RISK_CHECK, lambda decision: decision)
    n = 3 * DEFAULT_MAX_SERIES_PER_METRIC

    # Act
    for i in range(n):
        risk_check(_veto(i))
    state: dict = {}
    block = write_runtime_diagnostics_state(state, LivenessConfig())

    # Assert: at most cap + 1 series, reported by every reader
    vc = block["veto_counters"]
    assert len(telemetry.state.counter_points(sc.METRIC_VETOES)) == DEFAULT_MAX_SERIES_PER_METRIC + 1
    assert vc["overflow"] is True and vc["total_vetoes"] == n
    assert vc["by_reason"][OTHER] == n - DEFAULT_MAX_SERIES_PER_METRIC
    assert len(vc["by_reason"]) == DEFAULT_MAX_SERIES_PER_METRIC + 1
    assert sum(vc["by_reason"].values()) == sum(vc["by_symbol"].values()) == n
    points = [p for rm in sdk_reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics
              for m in sm.metrics if m.name == sc.METRIC_VETOES for p in m.data.data_points]
    assert len(points) == DEFAULT_MAX_SERIES_PER_METRIC + 1 and sum(p.value for p in points) == n
    assert [p.attributes for p in points if p.attributes.get(sc.ATTR_OVERFLOW)] == [{sc.ATTR_OVERFLOW: True}]

    # and the published file and the panel show it
    publisher = DiagnosticsPublisher(str(tmp_path), AppConfig(), clock=lambda: START)
    assert publisher.publish()
    size = (tmp_path / "diagnostics.json").stat().st_size
    loaded = load_runtime_diagnostics_state(str(tmp_path), now=START)
    assert loaded["runtime_diagnostics"]["veto_counters"]["overflow"] is True
    assert risk_panel.veto_totals(loaded)["overflow"] is True
    print(f"{n} distinct veto reasons -> {len(vc['by_reason'])} series; diagnostics.json {size / 1024:.0f} KiB")
    assert size < 512 * 1024
    json.dumps(state, allow_nan=False)


def test_symbols_and_exit_reasons_when_unbounded_then_each_metric_capped_at_configured_limit():
    # Arrange: a small cap, set through configure()
    cap = 50
    telemetry = otel_diag.configure(clock=lambda: START, env={}, tracing=False, max_series_per_metric=cap)
    check = _wrapped(sc.SPAN_RISK_CHECK, lambda signal: SimpleNamespace(signal=signal, approved=True))
    trigger = _wrapped(sc.SPAN_EXIT_TRIGGER, lambda position, reason: None)

    # Act: every signal reaches the risk engine, where it is counted
    for i in range(1_000):
        check(SimpleNamespace(symbol=f"PERP-{i}", side=Side.BUY))
        trigger(None, f"stop_loss@{i}")

    # Assert
    derived = telemetry.snapshot()
    assert len(derived.signals_by_symbol) == cap + 1 and derived.signals_by_symbol[OTHER] == 1_000 - cap
    assert derived.total_signals == 1_000 and derived.exit_triggers == 1_000
    assert len(telemetry.state.counter_points(sc.METRIC_EXIT_TRIGGERS)) == cap + 1
    assert telemetry.state.overflowed() == {sc.METRIC_SIGNALS: True, sc.METRIC_EXIT_TRIGGERS: True}
    state: dict = {}
    assert write_runtime_diagnostics_state(state, LivenessConfig())["veto_counters"]["overflow"] is True


def test_memory_when_100k_more_distinct_values_after_the_cap_then_does_not_grow():
    # Arrange: fill every series up to the cap (plus the remembered folded keys)
    otel_diag.configure(clock=lambda: START, env={}, tracing=False)
    risk_check = _wrapped(sc.SPAN_RISK_CHECK, lambda decision: decision)
    gc.collect()
    rss_before = _rss_kib()
    tracemalloc.start()
    try:
        for i in range(20_000):
            risk_check(_veto(i))
        gc.collect()
        at_cap, _ = tracemalloc.get_traced_memory()

        # Act: 100,000 more values nobody has seen
        for i in range(20_000, 120_000):
            risk_check(_veto(i))
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_after = _rss_kib()

    # Assert
    growth = after - at_cap
    print(f"traced memory: {at_cap / 2**20:.2f} MiB after 20k distinct reasons (cap reached), "
          f"{after / 2**20:.2f} MiB after 120k (growth {growth / 1024:.0f} KiB, peak {peak / 2**20:.2f} MiB); "
          f"RSS {rss_before / 1024:.0f} -> {rss_after / 1024:.0f} MiB")
    assert at_cap < 8 * 2**20
    assert growth < 256 * 1024
    assert otel_diag.current().snapshot().total_vetoes == 120_000
