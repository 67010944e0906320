"""ExecutionInstrumentor under opentelemetry-test-utils' ``TestBase``: the harness every contrib instrumentor is tested with.

As in opentelemetry-python-contrib (redis, jinja2, botocore, ...): ``setUp`` installs TestBase's global in-memory
providers and instruments, ``tearDown`` uninstruments; the tests drive the real paper engine a few cycles and read
spans from ``self.memory_exporter`` and metrics through ``self.get_sorted_metrics()``.
"""
from __future__ import annotations

import collections
import collections.abc
import os
import re
from typing import Dict, List, Optional
from unittest import mock

from opentelemetry import trace as trace_api
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.metrics.export import Gauge, Sum
from opentelemetry.test.test_base import TestBase
from opentelemetry.trace import SpanKind, StatusCode

import otel_diag
from execution.clock import SimClock
from execution.config import load_config
from execution.engine import CycleResult, Executor
from execution.journal import Journal
from execution.market_data import SyntheticFeed
from execution.scenarios import Scenario
from otel_diag import package
from otel_diag import semconv as sc
from otel_diag.instrumentor import ExecutionInstrumentor, import_engine, target_functions
from otel_diag.state import EventState

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_PATH = os.path.join(ROOT, "config", "strategy_config.json")
SEED = 7
CYCLES = 30  # with seed 7: signals, vetoes, TWAP-sliced orders, a retried slice and TP/SL exits all happen

COUNTERS = (sc.METRIC_SIGNALS, sc.METRIC_ORDERS, sc.METRIC_VETOES, sc.METRIC_ROUTER_EVENTS, sc.METRIC_EXIT_SCANS,
            sc.METRIC_EXIT_TRIGGERS)
CURRENT_COUNTS = (sc.METRIC_POSITIONS_OPEN, sc.METRIC_TP_SL_REGISTERED, sc.METRIC_TP_SL_MISSING,
                  sc.METRIC_TP_SL_ORPHANED, sc.METRIC_UNDERWATER_UNPROTECTED)
GAUGES = (sc.METRIC_LAST_EVENT_TIME, sc.METRIC_TP_SL_COVERAGE)
ALL_SPANS = {sc.SPAN_EXECUTOR_CYCLE, sc.SPAN_SIGNAL_GENERATE, sc.SPAN_RISK_CHECK, sc.SPAN_ORDER_ROUTE,
             sc.SPAN_ORDER_TWAP_SLICE, sc.SPAN_EXCHANGE_PLACE_ORDER, sc.SPAN_EXIT_SCAN, sc.SPAN_EXIT_TRIGGER}
ORDER_ID = re.compile(r"^[EX]\d{6}$")  # E: an entry order of the cycle, X: an exit order of the scanner


class Engine:
    """The paper engine on a replay clock and the synthetic feed, driven one cycle per bar like ``executor`` does."""

    def __init__(self, clock: SimClock) -> None:
        self.cfg = load_config(CONFIG_PATH)
        self.clock = clock
        self.bar_seconds = self.cfg.market_data.bar_seconds
        self.executor = Executor(self.cfg, clock=clock, seed=SEED, scenario=Scenario(), journal=Journal(None))
        self._steps = SyntheticFeed(self.cfg.strategy.symbols, SEED, self.cfg.market_data.start_epoch,
                                    self.bar_seconds).steps(10_000)
        self.index = 0
        self.last_ts: Optional[float] = None

    def run(self, cycles: int) -> List[CycleResult]:
        return [self.cycle() for _ in range(cycles)]

    def cycle(self) -> CycleResult:
        ts, bars = next(self._steps)
        self.clock.set(ts + self.bar_seconds)
        index, self.index, self.last_ts = self.index, self.index + 1, ts
        return self.executor.run_cycle(index, ts, bars)


def points(metric) -> Dict[tuple, float]:
    """A metric's data points: value by sorted attribute items."""
    return {tuple(sorted(p.attributes.items())): p.value for p in metric.data.data_points}


def total(metric) -> float:
    return sum(p.value for p in metric.data.data_points)


class _InstrumentorTestBase(TestBase):
    def setUp(self):
        super().setUp()
        import_engine()
        self.originals = target_functions()  # the engine's own functions, taken while nothing is patched
        start = load_config(CONFIG_PATH).market_data.start_epoch
        self.clock = SimClock(start)
        self.state = EventState(self.clock)

    def tearDown(self):
        instrumentor = ExecutionInstrumentor()
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        super().tearDown()

    def trading_metrics(self, reader=None) -> Dict[str, object]:
        """The ``trading.*`` metrics collected now (from TestBase's global reader by default), by name."""
        if reader is None:
            found = self.get_sorted_metrics()
        else:
            data = reader.get_metrics_data()
            found = [m for rm in (data.resource_metrics if data else ()) for sm in rm.scope_metrics for m in sm.metrics]
        return {m.name: m for m in found if m.name.startswith("trading.")}

    def spans_named(self, name: str):
        return [s for s in self.memory_exporter.get_finished_spans() if s.name == name]


class TestExecutionInstrumentor(_InstrumentorTestBase):
    def setUp(self):
        super().setUp()
        ExecutionInstrumentor().instrument(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider,
                                           clock=self.clock, event_state=self.state)
        self.engine = Engine(self.clock)

    # 1. spans -------------------------------------------------------------------------------------
    def test_spans(self):
        self.engine.run(CYCLES)

        spans = self.get_finished_spans()
        self.assertEqual({s.name for s in spans}, ALL_SPANS)
        for span in spans:
            self.assertEqualSpanInstrumentationScope(span, otel_diag)
            self.assertEqual(span.instrumentation_scope.name, sc.INSTRUMENTATION_NAME)
            self.assertEqual(span.instrumentation_scope.schema_url, sc.SCHEMA_URL)
            self.assertIs(span.kind, SpanKind.INTERNAL)
            self.assertIs(span.status.status_code, StatusCode.UNSET)
        by_id = {s.context.span_id: s for s in spans}

        cycles = self.spans_named(sc.SPAN_EXECUTOR_CYCLE)
        self.assertEqual(sorted(s.attributes[sc.ATTR_CYCLE_INDEX] for s in cycles), list(range(CYCLES)))
        self.assertTrue(all(s.parent is None for s in cycles))
        cycle_ids = {s.context.span_id: s for s in cycles}

        # signal.generate and risk.check are children of executor.cycle, in its trace
        symbols = self.engine.cfg.strategy.symbols
        generated = self.spans_named(sc.SPAN_SIGNAL_GENERATE)
        self.assertEqual(len(generated), CYCLES * len(symbols))
        for name in (sc.SPAN_SIGNAL_GENERATE, sc.SPAN_RISK_CHECK):
            for span in self.spans_named(name):
                self.assertIsNotNone(span.parent, name)
                self.assertIn(span.parent.span_id, cycle_ids, name)
                self.assertEqual(span.context.trace_id, cycle_ids[span.parent.span_id].context.trace_id)
                self.assertIn(span.attributes[sc.ATTR_SYMBOL], symbols)
        per_cycle = collections.Counter(s.parent.span_id for s in generated)
        self.assertEqual(set(per_cycle.values()), {len(symbols)})

        # risk.check: symbol and side always; quantity when approved, the veto reason when not
        stats = self.engine.executor.stats
        checks = self.spans_named(sc.SPAN_RISK_CHECK)
        self.assertEqual(len(checks), stats.signals)
        for span in checks:
            self.assertIn(sc.ATTR_SYMBOL, span.attributes)
            self.assertIn(span.attributes[sc.ATTR_SIDE], ("buy", "sell"))
            self.assertNotEqual(sc.ATTR_QUANTITY in span.attributes, sc.ATTR_VETO_REASON in span.attributes)
        self.assertEqual(collections.Counter(s.attributes[sc.ATTR_VETO_REASON] for s in checks
                                             if sc.ATTR_VETO_REASON in s.attributes), stats.vetoes)

        # order.route: every order attribute; entries under the cycle, exits under their exit.trigger
        routes = self.spans_named(sc.SPAN_ORDER_ROUTE)
        self.assertEqual(len(routes), stats.orders_routed)
        first_entry = min((s for s in routes if s.attributes[sc.ATTR_ORDER_ID].startswith("E")),
                          key=lambda s: s.attributes[sc.ATTR_ORDER_ID])
        self.assertSpanHasAttributes(first_entry, {sc.ATTR_ORDER_ID: "E000001", sc.ATTR_ROUTER_EVENT: sc.ROUTER_ROUTE})
        for span in routes:
            self.assertSpanHasAttributes(span, {sc.ATTR_ROUTER_EVENT: sc.ROUTER_ROUTE})
            order_id = span.attributes[sc.ATTR_ORDER_ID]
            self.assertRegex(order_id, ORDER_ID)
            self.assertGreater(span.attributes[sc.ATTR_QUANTITY], 0)
            self.assertIn(span.attributes[sc.ATTR_SIDE], ("buy", "sell"))
            parent = by_id[span.parent.span_id]
            if order_id.startswith("E"):
                self.assertEqual(parent.name, sc.SPAN_EXECUTOR_CYCLE)
            else:
                self.assertEqual(parent.name, sc.SPAN_EXIT_TRIGGER)
                self.assertSpanHasAttributes(span, {sc.ATTR_SYMBOL: parent.attributes[sc.ATTR_SYMBOL]})

        # exit.trigger: under exit.scan, with its reason
        triggers = self.spans_named(sc.SPAN_EXIT_TRIGGER)
        self.assertEqual(collections.Counter(s.attributes[sc.ATTR_EXIT_REASON] for s in triggers),
                         stats.exit_triggers_by_reason)
        self.assertTrue(all(by_id[s.parent.span_id].name == sc.SPAN_EXIT_SCAN for s in triggers))

    # 2. metrics --------------------------------------------------------------------------------
    def test_metrics_units_kinds_and_counts(self):
        self.engine.run(CYCLES)

        found = self.trading_metrics()
        self.assertEqual(set(found), set(sc.METRIC_UNITS))
        for name, metric in found.items():
            self.assertEqual(metric.unit, sc.METRIC_UNITS[name], name)
            self.assertTrue(metric.data.data_points, name)
        for name in COUNTERS:
            self.assertIsInstance(found[name].data, Sum, name)
            self.assertTrue(found[name].data.is_monotonic, name)
        for name in CURRENT_COUNTS:
            self.assertIsInstance(found[name].data, Sum, name)
            self.assertFalse(found[name].data.is_monotonic, name)
        for name in GAUGES:
            self.assertIsInstance(found[name].data, Gauge, name)
        # the meter's scope, as the tracer's
        data = self.memory_metrics_reader.get_metrics_data()
        scopes = {sm.scope for rm in data.resource_metrics for sm in rm.scope_metrics
                  if any(m.name.startswith("trading.") for m in sm.metrics)}
        self.assertEqual({(s.name, s.version, s.schema_url) for s in scopes},
                         {(sc.INSTRUMENTATION_NAME, otel_diag.__version__, sc.SCHEMA_URL)})

        # the counts are what the engine did
        executor = self.engine.executor
        stats = executor.stats
        self.assertEqual(total(found[sc.METRIC_EXIT_SCANS]), CYCLES)
        self.assertEqual(total(found[sc.METRIC_EXIT_SCANS]), stats.exit_scans)
        self.assertEqual(total(found[sc.METRIC_SIGNALS]), len(self.spans_named(sc.SPAN_RISK_CHECK)))
        self.assertEqual(total(found[sc.METRIC_SIGNALS]), stats.signals)
        self.assertEqual(total(found[sc.METRIC_ORDERS]), len(self.spans_named(sc.SPAN_ORDER_ROUTE)))
        self.assertEqual(total(found[sc.METRIC_ORDERS]), stats.orders_routed)
        self.assertEqual(points(found[sc.METRIC_EXIT_TRIGGERS]),
                         {((sc.ATTR_EXIT_REASON, reason),): n for reason, n in stats.exit_triggers_by_reason.items()})
        vetoes = collections.Counter()
        for attrs, value in points(found[sc.METRIC_VETOES]).items():
            vetoes[dict(attrs)[sc.ATTR_VETO_REASON]] += value
        self.assertEqual(vetoes, stats.vetoes)
        slices = len(self.spans_named(sc.SPAN_ORDER_TWAP_SLICE))
        self.assertEqual(points(found[sc.METRIC_ROUTER_EVENTS]), {
            ((sc.ATTR_ROUTER_EVENT, sc.ROUTER_ROUTE),): stats.orders_routed,
            ((sc.ATTR_ROUTER_EVENT, sc.ROUTER_TWAP_SLICE),): slices,
            ((sc.ATTR_ROUTER_EVENT, sc.ROUTER_FILL),): slices - stats.rejected_slices,
            **({((sc.ATTR_ROUTER_EVENT, sc.ROUTER_REJECT),): stats.rejected_slices} if stats.rejected_slices else {}),
        })
        # the current counts are the book after the last scan (nothing trades after the scan but entries)
        last_scan = self.spans_named(sc.SPAN_EXIT_SCAN)[-1]
        self.assertEqual(total(found[sc.METRIC_POSITIONS_OPEN]), last_scan.attributes[sc.ATTR_POSITIONS_OPEN])
        self.assertEqual(total(found[sc.METRIC_TP_SL_REGISTERED]) + total(found[sc.METRIC_TP_SL_MISSING]),
                         total(found[sc.METRIC_POSITIONS_OPEN]))
        # every event kind stamped with the engine's clock; the last exit scan and signal in the last cycle
        last_times = points(found[sc.METRIC_LAST_EVENT_TIME])
        self.assertEqual(last_times[((sc.ATTR_EVENT, sc.EVENT_EXIT_SCAN),)], self.clock())
        self.assertEqual({dict(k)[sc.ATTR_EVENT] for k in last_times},
                         {sc.EVENT_SIGNAL, sc.EVENT_ORDER, sc.EVENT_ROUTER, sc.EVENT_EXIT_SCAN, sc.EVENT_EXIT_TRIGGER}
                         | ({sc.EVENT_VETO} if stats.vetoes else set()))

    # 3. error status ---------------------------------------------------------------------------
    def _run_until_raised(self, error: BaseException):
        """Cycles with RiskEngine.size (called by the original risk.check) raising ``error``, until a signal hits it."""
        with mock.patch.object(self.engine.executor.risk, "size", side_effect=error):
            for _ in range(CYCLES):
                try:
                    self.engine.cycle()
                except BaseException as raised:  # noqa: B036 - SystemExit / KeyboardInterrupt are the point here
                    return raised
        self.fail("no signal reached the risk check")

    def test_exception_sets_error_status_and_propagates_unchanged(self):
        boom = ValueError("bad qty")

        raised = self._run_until_raised(boom)

        self.assertIs(raised, boom)  # the very exception, not wrapped
        self.assertIs(trace_api.get_current_span(), trace_api.INVALID_SPAN)  # the context was detached
        for name in (sc.SPAN_RISK_CHECK, sc.SPAN_EXECUTOR_CYCLE):
            span = self.spans_named(name)[-1]
            self.assertIsNotNone(span.end_time, name)
            self.assertIs(span.status.status_code, StatusCode.ERROR, name)
            self.assertEqual(span.status.description, "ValueError: bad qty", name)
            events = [e for e in span.events if e.name == "exception"]
            self.assertEqual(len(events), 1, name)
            self.assertEqual(events[0].attributes["exception.type"], "ValueError")
            self.assertEqual(events[0].attributes["exception.message"], "bad qty")
        failed = self.spans_named(sc.SPAN_RISK_CHECK)[-1]
        self.assertEqual(failed.parent.span_id, self.spans_named(sc.SPAN_EXECUTOR_CYCLE)[-1].context.span_id)
        # the signal still arrived: counted like every other
        self.assertEqual(sum(v for v, _ in self.state.counter_points(sc.METRIC_SIGNALS)),
                         len(self.spans_named(sc.SPAN_RISK_CHECK)))

    def _assert_not_recorded_as_exception(self, error: BaseException):
        raised = self._run_until_raised(error)

        self.assertIs(raised, error)
        self.assertIs(trace_api.get_current_span(), trace_api.INVALID_SPAN)
        for name in (sc.SPAN_RISK_CHECK, sc.SPAN_EXECUTOR_CYCLE):
            span = self.spans_named(name)[-1]  # finished: exported by the SimpleSpanProcessor at end()
            self.assertIsNotNone(span.end_time, name)
            self.assertIs(span.status.status_code, StatusCode.UNSET, name)
            self.assertEqual([e.name for e in span.events if e.name == "exception"], [], name)
        self.assertEqual(len(self.spans_named(sc.SPAN_EXECUTOR_CYCLE)), self.engine.index)

    def test_keyboard_interrupt_is_not_recorded_but_span_ends(self):
        self._assert_not_recorded_as_exception(KeyboardInterrupt())

    def test_system_exit_is_not_recorded_but_span_ends(self):
        self._assert_not_recorded_as_exception(SystemExit(3))

    # 4. uninstrument ---------------------------------------------------------------------------
    def test_uninstrument(self):
        self.engine.run(5)
        before = self.trading_metrics()
        self.assertEqual(total(before[sc.METRIC_EXIT_SCANS]), 5)
        counted = {name: points(before[name]) for name in COUNTERS + (sc.METRIC_LAST_EVENT_TIME,) if name in before}

        ExecutionInstrumentor().uninstrument()
        self.memory_exporter.clear()
        self.engine.run(5)

        self.assertEqual(self.memory_exporter.get_finished_spans(), ())
        self.assertEqual(ExecutionInstrumentor.patched(), [])
        self.assertEqual(target_functions(), self.originals)
        self.assertFalse(ExecutionInstrumentor().is_instrumented_by_opentelemetry)
        after = self.trading_metrics()
        # the instruments still report what was counted before, and nothing since
        self.assertEqual({name: points(after[name]) for name in counted}, counted)
        self.assertEqual(total(after[sc.METRIC_EXIT_SCANS]), 5)
        self.assertEqual(self.engine.executor.stats.exit_scans, 10)

    # 6. suppress_instrumentation ---------------------------------------------------------------
    def test_suppress_instrumentation(self):
        with suppress_instrumentation():
            self.engine.run(CYCLES)

        self.assertGreater(self.engine.executor.stats.signals, 0)  # the engine did run
        self.assertEqual(self.memory_exporter.get_finished_spans(), ())
        for name in COUNTERS:
            self.assertEqual(self.state.counter_points(name), [], name)
        self.assertEqual(self.state.last_event_times(), {})
        self.assertIsNone(self.state.exit_gauges)
        self.assertEqual({name: m.data.data_points for name, m in self.trading_metrics().items()
                          if m.data.data_points}, {})

        self.engine.cycle()  # outside: recorded again

        self.assertEqual(len(self.spans_named(sc.SPAN_EXECUTOR_CYCLE)), 1)
        self.assertEqual(total(self.trading_metrics()[sc.METRIC_EXIT_SCANS]), 1)
        self.assertEqual(self.state.last_event_times()[sc.EVENT_EXIT_SCAN], self.clock())

    # 7. contrib declarations -------------------------------------------------------------------
    def test_instrumentation_dependencies_and_supports_metrics(self):
        dependencies = ExecutionInstrumentor().instrumentation_dependencies()
        self.assertIsInstance(dependencies, collections.abc.Collection)
        self.assertTrue(all(isinstance(d, str) for d in dependencies))
        self.assertIs(package._supports_metrics, True)
        self.assertIs(ExecutionInstrumentor(), ExecutionInstrumentor())  # BaseInstrumentor: a singleton


# 5. providers: the globals TestBase installs, or explicit ones ----------------------------------
class TestExecutionInstrumentorProviders(_InstrumentorTestBase):
    def _explicit_providers(self):
        tracer_provider, exporter = TestBase.create_tracer_provider()
        meter_provider, reader = TestBase.create_meter_provider()
        self.addCleanup(meter_provider.shutdown)
        self.addCleanup(tracer_provider.shutdown)
        return tracer_provider, exporter, meter_provider, reader

    def test_instrument_without_providers_uses_the_globals(self):
        _, other_exporter, _, other_reader = self._explicit_providers()  # a bystander pair: must see nothing
        ExecutionInstrumentor().instrument(clock=self.clock, event_state=self.state)
        engine = Engine(self.clock)

        engine.run(3)

        spans = self.get_finished_spans()
        self.assertEqual(len(self.spans_named(sc.SPAN_EXECUTOR_CYCLE)), 3)
        for span in spans:
            self.assertEqualSpanInstrumentationScope(span, otel_diag)
            self.assertEqual(span.instrumentation_scope.schema_url, sc.SCHEMA_URL)
        found = self.trading_metrics()
        self.assertEqual(total(found[sc.METRIC_EXIT_SCANS]), 3)
        self.assertEqual(other_exporter.get_finished_spans(), ())
        self.assertEqual(self.trading_metrics(other_reader), {})

    def test_instrument_with_explicit_providers_uses_them_not_the_globals(self):
        tracer_provider, exporter, meter_provider, reader = self._explicit_providers()
        ExecutionInstrumentor().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider,
                                           clock=self.clock, event_state=self.state)
        engine = Engine(self.clock)

        engine.run(3)

        spans = exporter.get_finished_spans()
        self.assertEqual(len([s for s in spans if s.name == sc.SPAN_EXECUTOR_CYCLE]), 3)
        for span in spans:
            self.assertEqualSpanInstrumentationScope(span, otel_diag)
            self.assertEqual(span.instrumentation_scope.schema_url, sc.SCHEMA_URL)
        found = self.trading_metrics(reader)
        # three bars bring no signal yet: what every exit scan reports is there
        self.assertLessEqual({sc.METRIC_EXIT_SCANS, sc.METRIC_LAST_EVENT_TIME, sc.METRIC_TP_SL_COVERAGE,
                              *CURRENT_COUNTS}, set(found))
        self.assertTrue(all(m.unit == sc.METRIC_UNITS[name] for name, m in found.items()))
        self.assertEqual(total(found[sc.METRIC_EXIT_SCANS]), 3)
        # nothing reached TestBase's global providers
        self.assertEqual(self.memory_exporter.get_finished_spans(), ())
        self.assertEqual(self.trading_metrics(), {})
