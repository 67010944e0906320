"""ExecutionInstrumentor: the engine patched from the table, restored exactly, patched on import."""
from __future__ import annotations

import importlib
import inspect
import logging
import sys
import textwrap

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_diag
from otel_diag import semconv as sc
from otel_diag import wrappers
from otel_diag._log import RateLimitedLog
from otel_diag.instrumentor import ExecutionInstrumentor, import_engine, target_functions
from otel_diag.default_targets import TARGETS
from otel_diag.targets import Target
from otel_diag.wrappers import ACTIVE, EventSpec, is_patch
from tests.fixtures.config import SHIPPED_CONFIG, shipped_config

T0 = 1_767_571_200.0
ALL_TARGETS = [f"{t.module}.{t.name}" for t in TARGETS]
# With tracing off, span-only targets (no event to record) are not patched at all.
METRIC_TARGETS = [f"{t.module}.{t.name}" for t in TARGETS if t.spec.record is not None]


def engine_functions() -> dict:
    """What each target's owner holds right now, by ``module.Qualified.name``."""
    import_engine()
    return target_functions()


@pytest.fixture
def originals() -> dict:
    """The engine's own functions, taken while nothing is patched."""
    assert ExecutionInstrumentor.patched() == []
    functions = engine_functions()
    assert not any(is_patch(f) for f in functions.values())
    return functions


@pytest.fixture
def providers():
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield tracer_provider, meter_provider, reader, exporter
    tracer_provider.shutdown()
    meter_provider.shutdown()


def instrument(providers, targets=None) -> ExecutionInstrumentor:
    tracer_provider, meter_provider, _, _ = providers
    inst = ExecutionInstrumentor()
    inst.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider, clock=lambda: T0,
                    skip_dep_check=True, targets=targets)
    return inst


def test_instrument_when_engine_imported_then_every_target_patched_once(originals, providers):
    instrument(providers)

    assert ExecutionInstrumentor.patched() == ALL_TARGETS
    for name, fn in engine_functions().items():
        assert is_patch(fn)
        assert fn.__wrapped__ is originals[name]  # one layer, around the original


def test_uninstrument_when_instrumented_then_every_function_is_the_original_object(originals, providers):
    inst = instrument(providers)

    inst.uninstrument()

    assert ExecutionInstrumentor.patched() == []
    assert all(engine_functions()[name] is fn for name, fn in originals.items())
    from execution.signal_generator import SignalGenerator

    assert SignalGenerator.__dict__["generate"] is originals["execution.signal_generator.SignalGenerator.generate"]


def test_instrument_uninstrument_instrument_when_repeated_then_idempotent(originals, providers):
    inst = instrument(providers)
    for _ in range(3):
        inst.uninstrument()
        instrument(providers)

    assert ExecutionInstrumentor.patched() == ALL_TARGETS
    assert all(fn.__wrapped__ is originals[name] for name, fn in engine_functions().items())

    inst.uninstrument()
    assert all(engine_functions()[name] is fn for name, fn in originals.items())


def test_instrument_when_already_instrumented_then_only_warns(originals, providers, caplog):
    instrument(providers)
    before = engine_functions()

    with caplog.at_level(logging.WARNING):
        instrument(providers)

    assert any("already instrumented" in r.getMessage() for r in caplog.records)
    assert engine_functions() == before
    assert all(fn.__wrapped__ is originals[name] for name, fn in before.items())


def test_configure_when_called_twice_then_one_layer_of_wrapping(originals):
    otel_diag.configure(env={})
    otel_diag.configure(env={})

    assert ExecutionInstrumentor.patched() == METRIC_TARGETS
    wrapped = {name: fn for name, fn in engine_functions().items() if hasattr(fn, "__wrapped__")}
    assert len(wrapped) == len(METRIC_TARGETS)
    assert all(fn.__wrapped__ is originals[name] for name, fn in wrapped.items())


def test_configure_when_tracing_off_then_span_only_targets_left_unpatched_and_the_cycle_stamps_market_data():
    otel_diag.configure(env={})

    assert "execution.paper_exchange.PaperExchange.place_order" not in ExecutionInstrumentor.patched()
    assert "execution.signal_generator.SignalGenerator.generate" not in ExecutionInstrumentor.patched()
    assert "execution.engine.Executor.run_cycle" in ExecutionInstrumentor.patched()  # per-symbol bars, once a cycle


def test_instrument_when_patched_then_signatures_names_and_docs_are_the_engines(originals, providers):
    instrument(providers)

    for name, fn in engine_functions().items():
        original = originals[name]
        assert inspect.signature(fn) == inspect.signature(original), name
        assert (fn.__name__, fn.__qualname__, fn.__doc__) == (original.__name__, original.__qualname__, original.__doc__)


def test_uninstrument_when_done_then_engine_restored_and_counted_totals_still_reported(originals, providers):
    inst = instrument(providers)
    _, _, reader, _ = providers
    inst.binding.state.stamp(sc.EVENT_SIGNAL)
    stamped = inst.binding.state.last_event_times()[sc.EVENT_SIGNAL]
    assert ACTIVE.binding is inst.binding

    inst.uninstrument()

    assert ACTIVE.binding is None
    assert not inst.is_instrumented_by_opentelemetry
    assert engine_functions() == originals
    data = reader.get_metrics_data()
    last = [p for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
            if m.name == sc.METRIC_LAST_EVENT_TIME for p in m.data.data_points]
    # As a contrib instrumentation's counters keep their totals: a reader collecting later still sees them.
    assert [(p.attributes[sc.ATTR_EVENT], p.value) for p in last] == [(sc.EVENT_SIGNAL, stamped)]


def test_instrument_when_instrumented_then_each_engine_call_is_a_span(originals, providers):
    from execution.config import config_from_dict
    from execution.models import Bar
    from execution.signal_generator import SignalGenerator

    inst = instrument(providers)
    _, _, _, exporter = providers
    gen = SignalGenerator(config_from_dict({}).strategy)
    for i in range(3):
        gen.generate(Bar(T0 + 60 * i, "BTCUSDT", 100.0, 100.0, 100.0, 100.0, 1.0))

    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == [sc.SPAN_SIGNAL_GENERATE] * 3
    assert all(s.attributes[sc.ATTR_SYMBOL] == "BTCUSDT" for s in spans)
    assert inst.binding.state.counter_points(sc.METRIC_SIGNALS) == []  # no signal on a flat market: nothing counted


def raising_targets(*, record: bool, annotate: bool):
    """The patch table with every recorder and/or annotator replaced by one that raises."""

    def bad_record(b, instance, args, kwargs, result, trace_id):
        raise RuntimeError("recorder bug")

    def bad_annotate(span, instance, args, kwargs, result):
        raise RuntimeError("annotator bug")

    return tuple(Target(t.module, t.name, EventSpec(t.spec.span_name,
                                                   bad_record if record else t.spec.record,
                                                   bad_annotate if annotate else t.spec.annotate))
                 for t in TARGETS)


def replay(tmp_path, name: str, *, instrument: bool, processors=(), targets=None):
    from execution.diagnostics_document import JOURNAL_FILE
    from execution.executor_live import RunHooks, RunOptions, run

    state_dir = tmp_path / name
    summary = run(RunOptions(config_path=SHIPPED_CONFIG, state_dir=str(state_dir), cycles=30, instrument=instrument),
                  RunHooks(span_processors=processors, configure_kwargs={"env": {}, "targets": targets}))
    return summary, (state_dir / JOURNAL_FILE).read_bytes()


@pytest.mark.parametrize("record, annotate", [(True, False), (False, True), (True, True)])
def test_instrument_when_recorders_or_annotators_raise_then_engine_results_untouched(
        tmp_path, monkeypatch, caplog, record, annotate):
    errors = RateLimitedLog(logging.getLogger("otel_diag"))
    monkeypatch.setattr(wrappers, "_log", errors)
    exporter = InMemorySpanExporter()

    with caplog.at_level(logging.WARNING, logger="otel_diag"):
        broken, broken_journal = replay(tmp_path, "broken", instrument=True, processors=[SimpleSpanProcessor(exporter)],
                                        targets=raising_targets(record=record, annotate=annotate))
    plain, plain_journal = replay(tmp_path, "plain", instrument=False)

    assert broken_journal == plain_journal
    assert broken.stats == plain.stats
    assert len(exporter.get_finished_spans()) > 30  # the spans still ended
    assert errors.errors > 30
    logged = [r for r in caplog.records if r.name == "otel_diag"]
    failing_hooks = len(TARGETS) * (record + annotate)
    assert 0 < len(logged) <= failing_hooks, "each failing hook is logged at most once a minute"


# -- post-import hooks, in process (a module of our own stands in for an engine module) --------
@pytest.fixture
def late_module(tmp_path, monkeypatch):
    """A module that is not imported yet, and a patch table naming its function."""
    name = "otel_diag_late_target"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent('''
        class Late:
            def work(self, x):
                """Double x."""
                return 2 * x
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    yield name
    sys.modules.pop(name, None)


LATE_TABLE = (Target("otel_diag_late_target", "Late.work", EventSpec("late.work")),)


def test_instrument_when_module_imported_later_then_patched_on_import(late_module, providers):
    inst = instrument(providers, LATE_TABLE)
    assert late_module not in sys.modules

    module = importlib.import_module(late_module)

    assert is_patch(module.Late.__dict__["work"])
    assert module.Late().work(21) == 42
    assert [s.name for s in providers[3].get_finished_spans()] == ["late.work"]
    original = module.Late.__dict__["work"].__wrapped__
    inst.uninstrument()
    assert module.Late.__dict__["work"] is original


def test_uninstrument_when_before_import_then_the_stale_hook_patches_nothing(late_module, providers):
    inst = instrument(providers, LATE_TABLE)
    inst.uninstrument()

    module = importlib.import_module(late_module)

    assert not is_patch(module.Late.__dict__["work"])


def test_configure_when_sampler_always_off_then_span_only_targets_left_unpatched():
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    otel_diag.configure(env={"OTEL_TRACES_SAMPLER": "always_off"},
                        span_processors=[SimpleSpanProcessor(InMemorySpanExporter())])

    assert ExecutionInstrumentor.patched() == METRIC_TARGETS


@pytest.mark.parametrize("tracing", [False, True])
def test_router_events_when_replayed_then_each_slice_and_its_fill_or_reject_counted_at_route(
        tmp_path, originals, tracing):
    # Arrange: with tracing off order.twap_slice is not patched; its events come from order.route's RouteResult
    from execution.executor_live import RunHooks, RunOptions, run

    import json

    # every transient reject is final: slices end in fills and rejects
    config = shipped_config(tmp_path, router={"max_retries": 0})
    docs: list = []
    processors = (SimpleSpanProcessor(InMemorySpanExporter()),) if tracing else ()
    kwargs = {"env": {}} if tracing else {"env": {}, "tracing": False}

    # Act
    summary = run(RunOptions(config_path=config, state_dir=str(tmp_path / "state"), cycles=200),
                  RunHooks(span_processors=processors, on_publish=docs.append, configure_kwargs=kwargs))

    # Assert: the counts are the journal's, whichever path recorded them
    kinds = [json.loads(line)["type"] for line in (tmp_path / "state" / "journal.jsonl").read_text().splitlines()]
    events = docs[-1]["runtime_diagnostics"]["veto_counters"]["router_events"]
    assert summary.fills > 0 and summary.rejects > 0
    assert events == {"route": kinds.count("order"), "twap_slice": summary.fills + summary.rejects,
                      "fill": summary.fills, "reject": summary.rejects}
    # shut down: nothing patched any more, route_twap_slice (patched while tracing) and every other target its own again
    assert ExecutionInstrumentor.patched() == [] and engine_functions() == originals
