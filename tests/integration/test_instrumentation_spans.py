"""A replay of the instrumented engine: the span tree of each cycle, and counters equal to the engine's own counts."""
from __future__ import annotations

import collections
import json
import os
from typing import Dict, List

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_diag
from execution.engine import CycleResult
from execution.executor_live import RunHooks, RunOptions, RunSummary, run
from otel_diag import semconv as sc

SEED = 7
CYCLES = 30  # with seed 7: vetoes, TWAP-sliced orders and TP/SL exits all happen within these bars

# parent -> the children a span may have, per the design's tree
ALLOWED_CHILDREN = {
    sc.SPAN_EXECUTOR_CYCLE: {sc.SPAN_EXIT_SCAN, sc.SPAN_SIGNAL_GENERATE, sc.SPAN_RISK_CHECK, sc.SPAN_ORDER_ROUTE},
    sc.SPAN_EXIT_SCAN: {sc.SPAN_EXIT_TRIGGER},
    sc.SPAN_EXIT_TRIGGER: {sc.SPAN_ORDER_ROUTE},
    sc.SPAN_ORDER_ROUTE: {sc.SPAN_ORDER_TWAP_SLICE},
    sc.SPAN_ORDER_TWAP_SLICE: {sc.SPAN_EXCHANGE_PLACE_ORDER},
    sc.SPAN_SIGNAL_GENERATE: set(), sc.SPAN_RISK_CHECK: set(), sc.SPAN_EXCHANGE_PLACE_ORDER: set(),
}
# the edges one full cycle shows: a signal vetoed, one routed in TWAP slices, a TP/SL exit routed
FULL_CYCLE_EDGES = {
    (sc.SPAN_EXECUTOR_CYCLE, sc.SPAN_SIGNAL_GENERATE), (sc.SPAN_EXECUTOR_CYCLE, sc.SPAN_RISK_CHECK),
    (sc.SPAN_EXECUTOR_CYCLE, sc.SPAN_ORDER_ROUTE), (sc.SPAN_ORDER_ROUTE, sc.SPAN_ORDER_TWAP_SLICE),
    (sc.SPAN_ORDER_TWAP_SLICE, sc.SPAN_EXCHANGE_PLACE_ORDER), (sc.SPAN_EXECUTOR_CYCLE, sc.SPAN_EXIT_SCAN),
    (sc.SPAN_EXIT_SCAN, sc.SPAN_EXIT_TRIGGER), (sc.SPAN_EXIT_TRIGGER, sc.SPAN_ORDER_ROUTE),
}


class Recorded:
    """What a replay left behind: the summary, finished spans, journal lines and per-cycle observations."""

    def __init__(self) -> None:
        self.summary: RunSummary
        self.spans = ()
        self.journal: List[dict] = []
        self.cycles: List[CycleResult] = []
        self.cycle_clock: List[float] = []     # the engine clock during each cycle
        self.metrics: MetricsData = None       # the InMemoryMetricReader's collection after the last cycle
        self.derived = None                    # telemetry.snapshot() after the last cycle


def replay(state_dir, repo_root, cycles: int, *, seed: int = SEED, scenario: str = "healthy",
           fault_at: int = 100, config_path=None) -> Recorded:
    out = Recorded()
    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader()

    def on_cycle(result: CycleResult) -> None:
        telemetry = otel_diag.current()
        out.cycles.append(result)
        out.cycle_clock.append(telemetry.clock())
        if result.index == cycles - 1:  # the readers cannot collect after run()'s shutdown
            out.metrics = reader.get_metrics_data()
            out.derived = telemetry.snapshot()

    config_path = config_path or os.path.join(repo_root, "config", "strategy_config.json")
    out.summary = run(
        RunOptions(config_path=config_path, state_dir=str(state_dir), cycles=cycles, seed=seed, scenario=scenario,
                   fault_at=fault_at),
        RunHooks(span_processors=[SimpleSpanProcessor(exporter)], metric_readers=[reader], on_cycle=on_cycle,
                 configure_kwargs={"env": {}}))
    out.spans = exporter.get_finished_spans()
    with open(os.path.join(state_dir, "journal.jsonl"), encoding="utf-8") as fh:
        out.journal = [json.loads(line) for line in fh]
    return out


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Recorded:
    try:
        return replay(tmp_path_factory.mktemp("spans"), ROOT, CYCLES)
    finally:
        otel_diag.shutdown()


def cycle_trees(spans) -> Dict[int, list]:
    """Spans by the trace id of their executor.cycle root (asserting every span has one)."""
    by_id = {s.context.span_id: s for s in spans}
    roots = {s.context.trace_id: s for s in spans if s.name == sc.SPAN_EXECUTOR_CYCLE}
    trees: Dict[int, list] = collections.defaultdict(list)
    for s in spans:
        top = s
        while top.parent is not None:
            top = by_id[top.parent.span_id]
        assert top.name == sc.SPAN_EXECUTOR_CYCLE, f"{s.name} has no executor.cycle root"
        assert s.context.trace_id == top.context.trace_id == roots[top.context.trace_id].context.trace_id
        trees[top.context.trace_id].append(s)
    return trees


def edges(tree, by_id) -> set:
    return {(by_id[s.parent.span_id].name, s.name) for s in tree if s.parent is not None}


# -- the span tree ----------------------------------------------------------------------------------
def test_replay_when_one_cycle_then_one_trace_rooted_at_executor_cycle(tmp_path, repo_root):
    one = replay(tmp_path, repo_root, 1)

    trees = cycle_trees(one.spans)
    assert len(trees) == 1
    (tree,) = trees.values()
    (root,) = [s for s in tree if s.parent is None]
    assert root.name == sc.SPAN_EXECUTOR_CYCLE and root.attributes[sc.ATTR_CYCLE_INDEX] == 0
    by_id = {s.context.span_id: s for s in tree}
    assert edges(tree, by_id) >= {(sc.SPAN_EXECUTOR_CYCLE, sc.SPAN_EXIT_SCAN),
                                  (sc.SPAN_EXECUTOR_CYCLE, sc.SPAN_SIGNAL_GENERATE)}


def test_replay_when_cycles_run_then_each_cycle_is_one_trace_with_the_designed_tree(recorded):
    trees = cycle_trees(recorded.spans)
    by_id = {s.context.span_id: s for s in recorded.spans}

    assert len(trees) == CYCLES
    for tree in trees.values():
        assert [s.name for s in tree if s.parent is None] == [sc.SPAN_EXECUTOR_CYCLE]
        for parent, child in edges(tree, by_id):
            assert child in ALLOWED_CHILDREN[parent], f"{parent} -> {child}"
    indexes = sorted(s.attributes[sc.ATTR_CYCLE_INDEX] for s in recorded.spans if s.name == sc.SPAN_EXECUTOR_CYCLE)
    assert indexes == list(range(CYCLES))


def test_replay_when_a_cycle_vetoes_routes_and_exits_then_its_trace_has_the_whole_tree(recorded):
    by_id = {s.context.span_id: s for s in recorded.spans}
    full = []
    for tree in cycle_trees(recorded.spans).values():
        vetoed = any(s.name == sc.SPAN_RISK_CHECK and sc.ATTR_VETO_REASON in s.attributes for s in tree)
        sliced = any(len([c for c in tree if c.parent is not None and c.parent.span_id == s.context.span_id]) > 1
                     for s in tree if s.name == sc.SPAN_ORDER_ROUTE)
        if vetoed and sliced and edges(tree, by_id) >= FULL_CYCLE_EDGES:
            full.append(tree)

    assert full, f"no cycle of seed {SEED} within {CYCLES} bars shows a veto, a TWAP order and an exit together"
    tree = full[0]
    trace_id = tree[0].context.trace_id
    assert {s.context.trace_id for s in tree} == {trace_id}
    assert {s.name for s in tree} == set(ALLOWED_CHILDREN)


def test_replay_when_traced_then_spans_carry_the_trading_attributes(recorded):
    spans = recorded.spans
    by_name = collections.defaultdict(list)
    for s in spans:
        by_name[s.name].append(s)
    order_lines = [r for r in recorded.journal if r["type"] == "order"]

    for s in by_name[sc.SPAN_SIGNAL_GENERATE]:
        assert s.attributes[sc.ATTR_SYMBOL]
    with_side = [s for s in by_name[sc.SPAN_SIGNAL_GENERATE] if sc.ATTR_SIDE in s.attributes]
    assert len(with_side) == recorded.summary.stats.signals  # a side exactly when a signal came out
    for s in by_name[sc.SPAN_RISK_CHECK]:
        assert s.attributes[sc.ATTR_SYMBOL] and s.attributes[sc.ATTR_SIDE] in ("buy", "sell")
        assert (sc.ATTR_VETO_REASON in s.attributes) != (sc.ATTR_QUANTITY in s.attributes)
    vetoes = collections.Counter(s.attributes[sc.ATTR_VETO_REASON] for s in by_name[sc.SPAN_RISK_CHECK]
                                 if sc.ATTR_VETO_REASON in s.attributes)
    assert vetoes == recorded.summary.stats.vetoes
    for s in by_name[sc.SPAN_ORDER_ROUTE]:
        assert s.attributes[sc.ATTR_ROUTER_EVENT] == sc.ROUTER_ROUTE
        assert s.attributes[sc.ATTR_QUANTITY] > 0 and s.attributes[sc.ATTR_SIDE] in ("buy", "sell")
    assert [s.attributes[sc.ATTR_ORDER_ID] for s in by_name[sc.SPAN_ORDER_ROUTE]] == [r["order_id"] for r in order_lines]
    for s in by_name[sc.SPAN_ORDER_TWAP_SLICE]:
        assert s.attributes[sc.ATTR_ROUTER_EVENT] in (sc.ROUTER_FILL, sc.ROUTER_REJECT)
        parent = next(p for p in spans if p.context.span_id == s.parent.span_id)
        assert s.attributes[sc.ATTR_ORDER_ID] == parent.attributes[sc.ATTR_ORDER_ID]
    for s in by_name[sc.SPAN_EXCHANGE_PLACE_ORDER]:
        assert s.attributes[sc.ATTR_ORDER_ID].split("-")[0] in {r["order_id"] for r in order_lines}
        assert s.attributes[sc.ATTR_SYMBOL] and s.attributes[sc.ATTR_QUANTITY] > 0
    exits = collections.Counter(s.attributes[sc.ATTR_EXIT_REASON] for s in by_name[sc.SPAN_EXIT_TRIGGER])
    assert sum(exits.values()) == recorded.summary.stats.exit_triggers > 0
    assert set(exits) <= {"take_profit", "stop_loss"}
    for s in by_name[sc.SPAN_EXIT_TRIGGER]:
        assert s.attributes[sc.ATTR_SYMBOL] and s.attributes[sc.ATTR_QUANTITY] > 0


def test_replay_when_traced_then_last_trace_ids_point_at_real_cycles(recorded):
    cycle_ids = {format(s.context.trace_id, "032x"): s.attributes[sc.ATTR_CYCLE_INDEX]
                 for s in recorded.spans if s.name == sc.SPAN_EXECUTOR_CYCLE}
    last_ids = recorded.derived.extras["last_trace_ids"]

    assert set(last_ids) >= {sc.EVENT_SIGNAL, sc.EVENT_EXIT_SCAN, sc.EVENT_ORDER, sc.EVENT_ROUTER}
    assert all(tid in cycle_ids for tid in last_ids.values())
    assert cycle_ids[last_ids[sc.EVENT_EXIT_SCAN]] == CYCLES - 1


# -- counters equal the engine's own counts ---------------------------------------------------------
def points(data: MetricsData, name: str) -> List[tuple]:
    return [(dict(p.attributes), p.value) for rm in data.resource_metrics for sm in rm.scope_metrics
            if sm.scope.name == sc.INSTRUMENTATION_NAME for m in sm.metrics if m.name == name
            for p in m.data.data_points]


def by(data: MetricsData, name: str, attr: str) -> Dict[str, int]:
    out: Dict[str, int] = collections.Counter()
    for attrs, value in points(data, name):
        out[attrs[attr]] += value
    return dict(out)


def total(data: MetricsData, name: str) -> int:
    return sum(v for _, v in points(data, name))


def journal_counts(journal: List[dict]) -> Dict[str, int]:
    return {
        "orders": sum(r["type"] == "order" for r in journal),
        "fills": sum(r["type"] == "fill" for r in journal),
        "rejects": sum(r["type"] == "reject" and not r.get("retried", False) for r in journal),
    }


@pytest.fixture(scope="module")
def long_run(tmp_path_factory) -> Recorded:
    """120 bars of the tp_sl_gap scenario on a flaky venue: every kind of event, retries and final
    rejects among them, and positions left without TP/SL."""
    folder = tmp_path_factory.mktemp("counters")
    with open(os.path.join(ROOT, "config", "strategy_config.json"), encoding="utf-8") as fh:
        cfg = json.load(fh)
    cfg["exchange"]["transient_reject_probability"] = 0.3
    cfg["router"]["max_retries"] = 1
    config_path = folder / "flaky_venue.json"
    config_path.write_text(json.dumps(cfg))
    try:
        return replay(folder / "state", ROOT, 120, scenario="tp_sl_gap", fault_at=40, config_path=str(config_path))
    finally:
        otel_diag.shutdown()


def test_replay_when_counted_then_otel_points_equal_the_engine_counts(long_run):
    stats, data = long_run.summary.stats, long_run.metrics
    counts = journal_counts(long_run.journal)

    assert stats.signals > 0 and stats.vetoes and counts["orders"] > 0 and stats.exit_triggers > 0
    assert counts["rejects"] > 0 and stats.retries > 0, "the flaky venue should finally refuse some slices"
    assert total(data, sc.METRIC_SIGNALS) == stats.signals
    assert by(data, sc.METRIC_VETOES, sc.ATTR_VETO_REASON) == dict(stats.vetoes)
    assert total(data, sc.METRIC_ORDERS) == counts["orders"] == stats.orders_routed
    router = by(data, sc.METRIC_ROUTER_EVENTS, sc.ATTR_ROUTER_EVENT)
    assert router.get(sc.ROUTER_ROUTE, 0) == counts["orders"]
    assert router.get(sc.ROUTER_FILL, 0) == counts["fills"] == long_run.summary.fills
    assert router.get(sc.ROUTER_REJECT, 0) == counts["rejects"] == long_run.summary.rejects
    assert router.get(sc.ROUTER_TWAP_SLICE, 0) == counts["fills"] + counts["rejects"]
    assert total(data, sc.METRIC_EXIT_SCANS) == stats.exit_scans
    assert total(data, sc.METRIC_EXIT_TRIGGERS) == stats.exit_triggers
    orders_by_symbol = collections.Counter(r["symbol"] for r in long_run.journal if r["type"] == "order")
    assert by(data, sc.METRIC_ORDERS, sc.ATTR_SYMBOL) == dict(orders_by_symbol)


def test_replay_when_counted_then_snapshot_equals_the_engine_counts(long_run):
    stats, derived = long_run.summary.stats, long_run.derived
    counts = journal_counts(long_run.journal)

    assert derived.total_signals == stats.signals
    assert derived.vetoes_by_reason() == dict(stats.vetoes)
    assert derived.total_orders == counts["orders"]
    assert derived.router_events.get(sc.ROUTER_FILL, 0) == counts["fills"]
    assert derived.router_events.get(sc.ROUTER_REJECT, 0) == counts["rejects"]
    assert derived.router_events.get(sc.ROUTER_ROUTE, 0) == counts["orders"]
    assert (derived.exit_scans, derived.exit_triggers) == (stats.exit_scans, stats.exit_triggers)


def test_replay_when_counted_then_last_event_times_are_the_engine_clock_of_the_last_event(long_run):
    derived, data = long_run.derived, long_run.metrics
    clock_at = dict(zip((c.index for c in long_run.cycles), long_run.cycle_clock))

    def last(pred) -> float:
        return max(clock_at[c.index] for c in long_run.cycles if pred(c))

    from execution.journal import iso

    expected = {
        sc.EVENT_SIGNAL: last(lambda c: c.signals > 0),
        sc.EVENT_VETO: last(lambda c: c.vetoes),
        sc.EVENT_ORDER: last(lambda c: c.orders_routed > 0),
        sc.EVENT_ROUTER: last(lambda c: c.orders_routed > 0),
        sc.EVENT_EXIT_SCAN: last(lambda c: c.exit_scan is not None),
        sc.EVENT_EXIT_TRIGGER: last(lambda c: c.exit_scan is not None and c.exit_scan.triggers),
    }
    assert dict(derived.last_event_times) == expected
    gauge = {attrs[sc.ATTR_EVENT]: value for attrs, value in points(data, sc.METRIC_LAST_EVENT_TIME)}
    assert gauge == expected
    assert iso(expected[sc.EVENT_ORDER]) == [r for r in long_run.journal if r["type"] == "order"][-1]["ts"]


def test_replay_when_counted_then_exit_gauges_are_the_last_scans(long_run):
    from otel_diag.default_targets import exit_gauges

    last_scan = [c.exit_scan for c in long_run.cycles if c.exit_scan is not None][-1]
    expected = exit_gauges(last_scan)
    ex = long_run.derived.exit

    assert ex.known and expected.tp_sl_missing > 0, "tp_sl_gap should leave positions unprotected"
    assert (ex.open_positions, ex.tp_sl_registered, ex.tp_sl_missing, ex.tp_sl_orphaned, ex.underwater_without_tp_sl) == (
        len(last_scan.open_positions), expected.tp_sl_registered, expected.tp_sl_missing, expected.tp_sl_orphaned,
        len(last_scan.underwater_without_tp_sl))
    assert ex.coverage == pytest.approx(expected.coverage)
    assert total(long_run.metrics, sc.METRIC_POSITIONS_OPEN) == len(last_scan.open_positions)


def test_replay_when_run_returns_then_nothing_is_left_patched(recorded):
    from otel_diag.instrumentor import ExecutionInstrumentor
    from otel_diag.wrappers import ACTIVE

    assert otel_diag.current() is None
    assert ExecutionInstrumentor.patched() == []
    assert ACTIVE.binding is None
