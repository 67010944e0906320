"""Targets as user data: a table of someone else's engine, declared in Python, TOML or JSON, by name or by value.

A small engine of our own making, written to a temporary folder (``mybot``) and never imported before the
test, stands in for a user's engine; its adapters live in a second module (``mybot_otel``), as a user's would.
"""
from __future__ import annotations

import inspect
import json
import logging
import sys
import textwrap

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_diag
from otel_diag import semconv as sc
from otel_diag import wrappers
from otel_diag._log import RateLimitedLog
from otel_diag.instrumentor import ExecutionInstrumentor
from otel_diag.state import coverage_gauges
from otel_diag.targets import TARGETS_ENV, TargetError, load_targets, target
from otel_diag.wrappers import is_patch
from tests.fixtures.config import shipped_config

from .conftest import T0

ENGINE = '''
class Order:
    def __init__(self, symbol, size):
        self.symbol, self.size = symbol, size


class BaseVenue:
    def fill(self, order):
        """Fill an order (inherited by Venue: a target may name an inherited method)."""
        return {"symbol": order.symbol, "filled": order.size}


class Venue(BaseVenue):
    pass


class Bot:
    def __init__(self):
        self.book = {}          # symbol -> size of the open position
        self.stops = set()      # symbols with a stop order
        self.marks = {}         # symbol -> unrealised pnl

    def decide(self, symbol, price):
        """A signal, or None."""
        return "long" if price > 100 else None

    def check(self, symbol, side):
        return None if symbol != "DOGE" else "blocked_symbol"

    def submit(self, order, *, urgent=False):
        if order.size <= 0:
            raise ValueError("size must be > 0")
        self.book[order.symbol] = order.size
        return order

    def scan(self):
        return len(self.book)

    def close(self, symbol, why):
        self.book.pop(symbol, None)
        return why

    def on_bars(self, bars):
        """One cycle's closes, {symbol: price}."""
        return len(bars)
'''

ADAPTERS = '''
from otel_diag.targets import target


def symbol_arg(call):
    return call.arg(0, "symbol")


def order_symbol(call):
    return call.arg(0, "order").symbol


def has_signal(call):
    return call.result is not None


def veto_reason(call):
    return call.result


def coverage(call):
    bot = call.instance
    keys = [(s, "long") for s in bot.book]
    return keys, [(s, "long") for s in bot.stops], [(s, "long") for s, pnl in bot.marks.items() if pnl < 0]


def exit_reason(call):
    return call.arg(1, "why")


def closes(call):
    return call.arg(0, "bars")


def order_size(call):
    return {"trading.quantity": call.arg(0, "order").size}


TARGETS = (
    target("mybot:Bot.decide", "signal", span="bot.decide", symbol="mybot_otel:symbol_arg", when="mybot_otel:has_signal"),
    target("mybot:Bot.check", "veto", span="bot.check", symbol=symbol_arg, reason=veto_reason),
    target("mybot:Bot.submit", "order", span="bot.submit", symbol=order_symbol, router_event="route",
           attributes=order_size),
    target("mybot:Venue.fill", "router", span="venue.fill", router_event="fill", symbol=order_symbol),
    target("mybot:Bot.scan", "exit_scan", span="bot.scan", coverage=coverage),
    target("mybot:Bot.close", "exit_trigger", span="bot.close", symbol=symbol_arg, reason=exit_reason),
)
'''


@pytest.fixture
def mybot(tmp_path, monkeypatch):
    """The modules ``mybot`` (the engine) and ``mybot_otel`` (its table and adapters), not imported yet."""
    (tmp_path / "mybot.py").write_text(textwrap.dedent(ENGINE))
    (tmp_path / "mybot_otel.py").write_text(textwrap.dedent(ADAPTERS))
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("mybot", "mybot_otel"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield tmp_path
    for name in ("mybot", "mybot_otel"):
        sys.modules.pop(name, None)


def configure(targets=None, env=None, exporter=None):
    processors = [SimpleSpanProcessor(exporter)] if exporter is not None else []
    return otel_diag.configure(clock=lambda: T0, env=env or {}, targets=targets, span_processors=processors)


def trade(mybot_module) -> None:
    """One pass of the little engine: signals, checks, orders, fills, a scan, an exit."""
    bot, venue = mybot_module.Bot(), mybot_module.Venue()
    for symbol, price in (("BTC", 120.0), ("ETH", 90.0), ("DOGE", 130.0)):
        if bot.decide(symbol, price) and bot.check(symbol, "long") is None:
            order = mybot_module.Order(symbol, 2)
            bot.submit(order)
            venue.fill(order)
    bot.stops.add("SOL")  # a stop whose position is gone: an orphan
    bot.marks["BTC"] = -5.0  # BTC is open, unprotected and losing
    bot.scan()
    bot.close("BTC", "take_profit")
    return bot


# -- every event a row can declare --------------------------------------------------------------
def test_table_when_engine_runs_then_each_event_counted_stamped_and_traced(mybot):
    exporter = InMemorySpanExporter()
    telemetry = configure("mybot_otel:TARGETS", exporter=exporter)
    import mybot

    trade(mybot)

    derived = telemetry.snapshot()
    assert derived.signals_by_symbol == {"BTC": 1, "DOGE": 1}  # ETH's decide returned None: no signal
    assert derived.vetoes == {("blocked_symbol", "DOGE"): 1}
    assert derived.orders_by_symbol == {"BTC": 1}
    assert derived.router_events == {sc.ROUTER_ROUTE: 1, sc.ROUTER_FILL: 1}
    assert derived.exit_scans == 1 and derived.exit_triggers == 1
    assert set(derived.last_event_times) == {sc.EVENT_SIGNAL, sc.EVENT_VETO, sc.EVENT_ORDER, sc.EVENT_ROUTER,
                                             sc.EVENT_EXIT_SCAN, sc.EVENT_EXIT_TRIGGER}
    assert derived.exit.open_positions == 1 and derived.exit.tp_sl_missing == 1 and derived.exit.tp_sl_orphaned == 1
    assert derived.exit.underwater_without_tp_sl == 1 and derived.exit.coverage == 0.0
    assert derived.extras["missing_keys"] == [("BTC", "long")]
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"bot.decide", "bot.check", "bot.submit", "venue.fill", "bot.scan", "bot.close"}
    assert spans["bot.submit"].attributes == {sc.ATTR_SYMBOL: "BTC", sc.ATTR_ROUTER_EVENT: "route",
                                              sc.ATTR_QUANTITY: 2}
    assert spans["bot.close"].attributes == {sc.ATTR_SYMBOL: "BTC", sc.ATTR_EXIT_REASON: "take_profit"}
    veto_spans = [s for s in exporter.get_finished_spans() if s.attributes.get(sc.ATTR_VETO_REASON)]
    assert [s.attributes[sc.ATTR_SYMBOL] for s in veto_spans] == ["DOGE"]
    # ETH's decide returned nothing: `when` said no event, so its span carries no event attribute either
    decide_symbols = [s.attributes.get(sc.ATTR_SYMBOL) for s in exporter.get_finished_spans() if s.name == "bot.decide"]
    assert decide_symbols == ["BTC", None, "DOGE"]


def test_risk_check_row_when_approved_or_vetoed_then_every_check_a_signal_and_vetoes_by_reason(mybot):
    table = (target("mybot:Bot.check", "risk_check", symbol="mybot_otel:symbol_arg", reason="mybot_otel:veto_reason"),)
    telemetry = configure(table)
    import mybot

    trade(mybot)

    derived = telemetry.snapshot()
    assert derived.signals_by_symbol == {"BTC": 1, "DOGE": 1}
    assert derived.vetoes == {("blocked_symbol", "DOGE"): 1}
    assert set(derived.last_event_times) == {sc.EVENT_SIGNAL, sc.EVENT_VETO}


def test_table_when_instrumented_then_engine_results_exceptions_and_signatures_unchanged(mybot):
    import mybot as plain_module

    plain = trade(plain_module)
    signature = inspect.signature(plain_module.Bot.submit)
    sys.modules.pop("mybot")

    configure("mybot_otel:TARGETS")
    import mybot

    assert is_patch(mybot.Bot.__dict__["submit"])
    assert trade(mybot).book == plain.book
    assert inspect.signature(mybot.Bot.submit) == signature
    with pytest.raises(ValueError, match="size must be > 0"):
        mybot.Bot().submit(mybot.Order("BTC", 0))
    assert mybot.Bot().submit(mybot.Order("ETH", 1), urgent=True).symbol == "ETH"


def test_market_data_row_when_cycles_run_then_each_symbols_last_bar_and_last_price_change_stamped(mybot, clock):
    table = (target("mybot:Bot.on_bars", "market_data", span="bot.on_bars", prices="mybot_otel:closes"),)
    telemetry = otel_diag.configure(clock=clock, env={}, targets=table)
    import mybot

    bot = mybot.Bot()
    bot.on_bars({"BTC": 100.0, "ETH": 10.0})
    clock.now = T0 + 60
    assert bot.on_bars({"BTC": 100.0, "ETH": 11.0}) == 2
    clock.now = T0 + 120
    bot.on_bars({"ETH": 11.0})

    assert telemetry.snapshot().market_data == {
        "BTC": {sc.MARKET_DATA_BAR: T0 + 60, sc.MARKET_DATA_PRICE_CHANGE: T0},
        "ETH": {sc.MARKET_DATA_BAR: T0 + 120, sc.MARKET_DATA_PRICE_CHANGE: T0 + 60}}
    assert telemetry.snapshot().last_event_times == {}  # market data is no event of the global liveness


@pytest.mark.parametrize("row, needle", [
    (target("mybot:Bot.on_bars", "market_data"), "mybot:Bot.on_bars: a market_data row needs prices"),
    (target("mybot:Bot.scan", "exit_scan", prices="mybot_otel:closes"),
     "mybot:Bot.scan: prices belongs on a market_data row"),
])
def test_market_data_row_when_prices_missing_or_misplaced_then_one_warning_and_unpatched(mybot, caplog, row, needle):
    with caplog.at_level(logging.WARNING, logger="otel_diag"):
        configure((row,))

    messages = warnings_of(caplog)
    assert len(messages) == 1 and needle in messages[0], messages
    assert ExecutionInstrumentor.patched() == []


def test_table_when_uninstrumented_then_every_function_original_again(mybot):
    import mybot

    originals = {name: mybot.Bot.__dict__[name] for name in ("decide", "check", "submit", "scan", "close")}
    configure("mybot_otel:TARGETS", exporter=InMemorySpanExporter())
    assert all(is_patch(mybot.Bot.__dict__[name]) for name in originals)
    assert is_patch(mybot.Venue.__dict__["fill"])  # inherited: patched on the class the row names
    assert not is_patch(mybot.BaseVenue.__dict__["fill"])

    otel_diag.shutdown()

    assert {name: mybot.Bot.__dict__[name] for name in originals} == originals
    assert mybot.Venue().fill(mybot.Order("BTC", 1)) == {"symbol": "BTC", "filled": 1}
    assert ExecutionInstrumentor.patched() == []


def test_adapter_when_it_raises_then_call_untouched_and_error_logged(mybot, caplog, monkeypatch):
    errors = RateLimitedLog(logging.getLogger("otel_diag"))
    monkeypatch.setattr(wrappers, "_log", errors)
    (mybot / "mybot_broken.py").write_text(textwrap.dedent('''
        from otel_diag.targets import target

        def broken(call):
            raise KeyError("adapter bug")

        TARGETS = (target("mybot:Bot.submit", "order", symbol=broken),)
    '''))
    configure("mybot_broken:TARGETS")
    import mybot

    with caplog.at_level(logging.WARNING, logger="otel_diag"):
        order = mybot.Bot().submit(mybot.Order("BTC", 3))

    assert order.size == 3
    assert errors.errors == 1
    assert any("recording an event failed" in r.getMessage() for r in caplog.records)
    sys.modules.pop("mybot_broken", None)


# -- where a table comes from -------------------------------------------------------------------
def test_table_when_named_by_env_then_loaded(mybot):
    telemetry = configure(env={TARGETS_ENV: "mybot_otel:TARGETS"})
    import mybot

    trade(mybot)

    assert telemetry.snapshot().orders_by_symbol == {"BTC": 1}


def test_table_when_given_to_instrumentor_constructor_then_used(mybot):
    inst = ExecutionInstrumentor(targets="mybot_otel:TARGETS")
    inst.instrument(clock=lambda: T0, tracing=False, skip_dep_check=True)
    import mybot

    try:
        assert is_patch(mybot.Bot.__dict__["submit"])
        assert inst.binding.state.counter_points(sc.METRIC_ORDERS) == []
        mybot.Bot().submit(mybot.Order("ETH", 1))
        assert inst.binding.state.counter_points(sc.METRIC_ORDERS) == [(1, {sc.ATTR_SYMBOL: "ETH"})]
    finally:
        inst.uninstrument()
    assert not is_patch(mybot.Bot.__dict__["submit"])


TOML_TABLE = '''
[[targets]]
function = "mybot:Bot.submit"
event = "order"
symbol = "mybot_otel:order_symbol"

[[targets]]
function = "mybot:Venue.fill"
event = "router"
router_event = "fill"

[[targets]]
function = "mybot:Bot.scan"
event = "exit_scan"
'''


@pytest.mark.parametrize("form", ["toml", "json"])
def test_table_when_file_then_count_and_stamp_rows_loaded(mybot, form):
    path = mybot / f"targets.{form}"
    if form == "toml":
        path.write_text(TOML_TABLE)
    else:
        import tomllib

        path.write_text(json.dumps(tomllib.loads(TOML_TABLE)))
    telemetry = configure(str(path))
    import mybot as engine

    trade(engine)

    derived = telemetry.snapshot()
    assert derived.orders_by_symbol == {"BTC": 1}
    assert derived.router_events == {sc.ROUTER_FILL: 1}
    assert derived.exit_scans == 1 and derived.signals_by_symbol == {}


def test_default_table_when_nothing_named_then_the_shipped_engine(monkeypatch):
    monkeypatch.delenv(TARGETS_ENV, raising=False)
    from otel_diag.default_targets import TARGETS

    assert load_targets() == TARGETS == load_targets("otel_diag.default_targets:TARGETS")


# -- what cannot be used is one warning naming it, and the rest still instrument ----------------
def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.name.startswith("otel_diag") and r.levelno == logging.WARNING]


def test_rows_when_some_unusable_then_one_warning_each_and_the_rest_instrumented(mybot, caplog):
    table = (
        target("mybot:Bot.submitt", "order"),                          # a typo in the function
        target("mybot_gone:Bot.submit", "order"),                       # a module that does not exist
        target("mybot:Bot.scan", "exit_scann"),                         # an unknown event
        target("mybot:Bot.check", "risk_check", reason="mybot_otel:no_such_adapter"),
        target("mybot:Bot.close", "veto"),                              # a veto without a reason
        target("Bot.decide", "signal"),                                 # no module
        target("mybot:Bot.submit", "order", symbol="mybot_otel:order_symbol"),
        target("mybot:Bot.submit", "router"),                           # the same function again
    )
    with caplog.at_level(logging.WARNING, logger="otel_diag"):
        telemetry = configure(table)
        import mybot

        trade(mybot)

    messages = warnings_of(caplog)
    assert len(messages) == 7, messages
    for needle in ("mybot:Bot.submitt: mybot has no Bot.submitt", "mybot_gone:Bot.submit: no module named mybot_gone",
                   "event 'exit_scann' is not one of", "reason: mybot_otel:no_such_adapter: mybot_otel has no "
                   "no_such_adapter", "mybot:Bot.close: a veto needs a reason", "'Bot.decide:'",
                   "mybot:Bot.submit: named by an earlier row too"):
        assert sum(needle in m for m in messages) == 1, (needle, messages)
    assert all(m.endswith("the other targets still instrument") for m in messages)
    assert all("\n" not in m for m in messages)
    derived = telemetry.snapshot()
    assert derived.orders_by_symbol == {"BTC": 1} and derived.router_events == {}
    assert ExecutionInstrumentor.patched() == ["mybot.Bot.submit"]


@pytest.mark.parametrize("source, needle", [
    ("mybot_otel:NO_TABLE", "mybot_otel has no NO_TABLE"),
    ("no_such_package.tables:TARGETS", "cannot import no_such_package.tables"),
    ("not a reference", "'not a reference' is not a module:name reference"),
    ("/nonexistent/targets.toml", "/nonexistent/targets.toml: No such file or directory"),
])
def test_table_when_it_cannot_load_then_one_warning_and_nothing_patched(mybot, caplog, source, needle):
    with caplog.at_level(logging.WARNING, logger="otel_diag"):
        telemetry = configure(env={TARGETS_ENV: source})
        import mybot

        trade(mybot)

    messages = warnings_of(caplog)
    assert len(messages) == 1 and needle in messages[0] and messages[0].endswith("nothing is instrumented"), messages
    assert telemetry.snapshot().orders_by_symbol == {}
    assert not is_patch(mybot.Bot.__dict__["submit"])


def test_table_file_when_a_fifo_or_folder_then_refused_at_once_not_read(tmp_path):
    import os

    os.mkfifo(tmp_path / "targets.toml")  # no writer ever opens it: a blocking open would hang here
    (tmp_path / "dir.json").mkdir()

    for name in ("targets.toml", "dir.json"):
        with pytest.raises(TargetError, match=f"{name}: not a regular file"):
            load_targets(str(tmp_path / name))


@pytest.mark.parametrize("text, needle", [
    ('[[targets]]\nfunction = "mybot:Bot.scan"\nevnt = "exit_scan"\n', "unknown key 'evnt'"),
    ('[[targets]]\nevent = "exit_scan"\n', "function (module:Qualified.name) is required"),
    ('targets = "mybot:Bot.scan"\n', "a table is a list of rows"),
    ('[[targets]\n', "not valid TOML"),
])
def test_toml_when_malformed_then_error_names_file_and_problem(tmp_path, text, needle):
    path = tmp_path / "targets.toml"
    path.write_text(text)

    with pytest.raises(TargetError) as caught:
        load_targets(str(path))

    assert str(path) in str(caught.value) and needle in str(caught.value)


# -- coverage: the same meaning for any engine ---------------------------------------------------
def test_coverage_gauges_when_keys_given_then_missing_orphans_underwater_defined_once():
    gauges = coverage_gauges(open_keys=[("BTC", "long"), ["ETH", "short"], "SOL"],
                             protected_keys=[("BTC", "long"), ("XRP", "long")],
                             underwater_keys=[("ETH", "short"), ("BTC", "long")])

    assert gauges.open_positions == 3 and gauges.tp_sl_registered == 1 and gauges.tp_sl_orphaned == 1
    assert gauges.coverage == pytest.approx(1 / 3)
    assert gauges.missing == (("ETH", "short"), ("SOL", ""))
    assert gauges.underwater_unprotected == (("ETH", "short"),)  # BTC is underwater but protected
    assert coverage_gauges([], []).coverage == 0.0


# -- the executor's config names a table ---------------------------------------------------------
def test_executor_when_config_names_a_table_then_only_its_rows_instrument(tmp_path):
    from execution.executor_live import RunHooks, RunOptions, run

    (tmp_path / "scans_only.toml").write_text(
        '[[targets]]\nfunction = "execution.exit_scanner:ExitScanner.scan"\nevent = "exit_scan"\n')
    config = shipped_config(tmp_path, telemetry={"targets": str(tmp_path / "scans_only.toml")})
    docs = []

    run(RunOptions(config_path=config, state_dir=str(tmp_path / "state"), cycles=30),
        RunHooks(on_publish=docs.append, configure_kwargs={"env": {}}))

    rd = docs[-1]["runtime_diagnostics"]
    assert rd["exit_pipeline"]["total_exit_scans"] == 30
    assert rd["veto_counters"]["total_signals"] == 0 and rd["veto_counters"]["total_orders"] == 0


def test_config_when_targets_blank_then_one_line_naming_the_key():
    from execution.config import ConfigError, config_from_dict

    with pytest.raises(ConfigError, match=r"telemetry\.targets.*module:TABLE"):
        config_from_dict({"telemetry": {"targets": "  "}})
