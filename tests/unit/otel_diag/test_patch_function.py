"""install_patch / patch_function: a plain method patched by a function that behaves like the original."""
from __future__ import annotations

import copy
import inspect
import pickle
import threading

import pytest
import wrapt

import otel_diag
from otel_diag import semconv as sc
from otel_diag.instrumentor import ExecutionInstrumentor, import_engine
from otel_diag.state import EventState
from otel_diag.wrappers import Binding, EventSpec, Holder, install_patch, is_patch, make_wrapper, remove_patch

T0 = 1_767_571_200.0


class Failed(Exception):
    pass


class Venue:
    """A stand-in host class (module level, so its instances pickle)."""

    def __init__(self, fee: float = 0.0) -> None:
        self.fee = fee

    def place(self, symbol: str, quantity: float, *, limit: float = 0.0) -> dict:
        """Place an order."""
        if quantity < 0:
            raise Failed(symbol)
        return {"symbol": symbol, "quantity": quantity + self.fee, "limit": limit}

    @classmethod
    def make(cls, fee: float) -> "Venue":
        return cls(fee)

    @staticmethod
    def unit() -> str:
        return "USDT"

    async def cancel(self, order_id: str) -> str:
        return order_id


class FeeVenue(Venue):
    def place(self, symbol: str, quantity: float, *, limit: float = 0.0) -> dict:
        placed = super().place(symbol, quantity, limit=limit)
        return {**placed, "fee_venue": True}


ORIGINALS = dict(Venue.__dict__)


def logging_wrapper(calls: list):
    def wrapper(wrapped, instance, args, kwargs):
        calls.append((instance, args, dict(kwargs)))
        return wrapped(*args, **kwargs)
    return wrapper


@pytest.fixture
def calls():
    """Venue's methods patched with a wrapper that logs every call; each restored afterwards."""
    seen: list = []
    for attr in ("place", "make", "unit", "cancel"):
        install_patch(Venue, attr, logging_wrapper(seen))
    yield seen
    for attr in ("place", "make", "unit", "cancel"):
        remove_patch(Venue, attr)
    assert all(Venue.__dict__[a] is ORIGINALS[a] for a in ("place", "make", "unit", "cancel"))


def test_plain_method_when_patched_then_a_function_like_the_original_and_every_call_wrapped(calls):
    patch = Venue.__dict__["place"]
    venue = Venue(fee=1.0)

    result = venue.place("BTCUSDT", 2.0, limit=3.0)

    assert inspect.isfunction(patch) and is_patch(patch) and patch.__wrapped__ is ORIGINALS["place"]
    assert (patch.__name__, patch.__qualname__, patch.__module__, patch.__doc__) == (
        "place", "Venue.place", __name__, "Place an order.")
    assert inspect.signature(venue.place) == inspect.signature(ORIGINALS["place"].__get__(venue))
    assert result == {"symbol": "BTCUSDT", "quantity": 3.0, "limit": 3.0}
    assert calls == [(venue, ("BTCUSDT", 2.0), {"limit": 3.0})]
    assert vars(venue) == {"fee": 1.0}  # nothing is stored on the instance


def test_patched_method_when_it_raises_then_the_same_exception(calls):
    with pytest.raises(Failed) as info:
        Venue().place("BAD", -1.0)
    assert info.value.args == ("BAD",)


def test_patched_method_when_called_through_the_class_or_super_then_wrapped_with_the_right_instance(calls):
    venue, fee_venue = Venue(fee=1.0), FeeVenue(fee=2.0)

    assert Venue.place(venue, "S", 1.0)["quantity"] == 2.0
    assert fee_venue.place("S", 1.0) == {"symbol": "S", "quantity": 3.0, "limit": 0.0, "fee_venue": True}
    assert [c[0] for c in calls] == [venue, fee_venue]


def test_instance_when_copied_deep_copied_or_pickled_then_each_copy_calls_itself(calls):
    venue = Venue(fee=1.0)
    venue.place("S", 1.0)

    shallow, deep, pickled = copy.copy(venue), copy.deepcopy(venue), pickle.loads(pickle.dumps(venue))
    for twin, fee in ((shallow, 10.0), (deep, 20.0), (pickled, 30.0)):
        twin.fee = fee
        assert twin.place("S", 1.0)["quantity"] == fee + 1.0
    assert [c[0] for c in calls[1:]] == [shallow, deep, pickled]
    assert venue.place("S", 1.0)["quantity"] == 2.0


def test_install_patch_when_classmethod_staticmethod_or_coroutine_then_wrapt_wraps_it(calls):
    assert isinstance(Venue.__dict__["make"], wrapt.FunctionWrapper)
    assert isinstance(Venue.__dict__["unit"], wrapt.FunctionWrapper)
    assert isinstance(Venue.__dict__["cancel"], wrapt.FunctionWrapper)
    assert inspect.iscoroutinefunction(Venue().cancel)

    assert Venue.make(3.0).fee == 3.0 and Venue.unit() == "USDT"
    assert len(calls) == 2


def test_remove_patch_when_nothing_patched_then_left_alone():
    remove_patch(Venue, "place")

    assert Venue.__dict__["place"] is ORIGINALS["place"]


def test_patched_method_when_eight_threads_call_at_once_then_counts_exact():
    state = EventState(lambda: T0)
    holder = Holder()
    holder.binding = Binding(state, None)

    def record(b, instance, args, kwargs, result, trace_id):
        b.state.hit(b.signals[args[0]], sc.EVENT_SIGNAL, trace_id)

    install_patch(Venue, "place", make_wrapper(EventSpec("venue.place", record), holder))
    try:
        venue = Venue()
        start = threading.Barrier(8)

        def work():
            start.wait()
            for _ in range(500):
                venue.place("BTCUSDT", 1.0)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert state.counter_points(sc.METRIC_SIGNALS) == [(4000, {sc.ATTR_SYMBOL: "BTCUSDT"})]
    finally:
        remove_patch(Venue, "place")


# -- the engine, as the instrumentor patches it ------------------------------------------------------------
def test_engine_instance_when_built_before_configure_then_recorded_and_restored_after_shutdown():
    import_engine()
    from execution.config import RiskConfig, StrategyConfig
    from execution.models import Side, Signal
    from execution.positions import PositionsLedger
    from execution.risk_limits import RiskEngine

    original = RiskEngine.__dict__["check"]
    risk = RiskEngine(RiskConfig(), StrategyConfig(), PositionsLedger(), lambda: T0)  # built before instrumentation

    otel_diag.configure(clock=lambda: T0, tracing=False, env={})
    assert "execution.risk_limits.RiskEngine.check" in ExecutionInstrumentor.patched()
    decisions = [risk.check(Signal(symbol, Side.BUY, price, T0, 1.0, volatility))
                 for symbol in ("BTCUSDT", "ETHUSDT") for price, volatility in ((100.0, 0.001), (100.0, 0.01))]
    twin = copy.deepcopy(risk)  # an instrumented engine object still copies
    derived = otel_diag.current().snapshot()

    otel_diag.shutdown()

    vetoed = [(d.reason, d.signal.symbol) for d in decisions if not d.approved]
    assert vetoed, "the high-volatility signal is sized below min_notional"
    assert derived.signals_by_symbol == {"BTCUSDT": 2, "ETHUSDT": 2}
    assert derived.vetoes == {key: vetoed.count(key) for key in vetoed}
    assert RiskEngine.__dict__["check"] is original and vars(twin).keys() == vars(risk).keys()


class Odd:
    def take(this, value=None, **extra):
        return this, value, extra


def _outcome(call):
    try:
        return "returned", call()
    except TypeError as exc:
        return "raised", str(exc)


def test_patched_method_when_called_oddly_then_exactly_what_the_original_does():
    odd = Odd()
    odd_calls = {
        "a keyword named self": lambda: odd.take(1, self="kw"),
        "first parameter as a keyword": lambda: odd.take(1, this="kw"),
        "through the class, None as the instance": lambda: Odd.take(None, 2),
        "through the class, no argument": lambda: Odd.take(),
    }
    original = Odd.__dict__["take"]
    expected = {name: _outcome(call) for name, call in odd_calls.items()}
    calls: list = []
    install_patch(Odd, "take", logging_wrapper(calls))
    try:
        got = {name: _outcome(call) for name, call in odd_calls.items()}
    finally:
        remove_patch(Odd, "take")

    assert got == expected
    assert expected["through the class, no argument"][0] == "raised"  # the cases do exercise errors
    assert expected["a keyword named self"] == ("returned", (odd, 1, {"self": "kw"}))
    assert [c[0] for c in calls] == [odd, odd]  # the two calls on an instance went through the wrapper
    assert Odd.__dict__["take"] is original


def test_install_patch_when_called_twice_then_one_layer_and_one_remove_restores():
    original = Odd.__dict__["take"]
    calls: list = []
    install_patch(Odd, "take", logging_wrapper(calls))
    install_patch(Odd, "take", logging_wrapper(calls))

    Odd().take(1)
    remove_patch(Odd, "take")

    assert len(calls) == 1 and Odd.__dict__["take"] is original


def test_someone_elses_wrapper_when_around_or_under_ours_then_never_taken_for_ours():
    import functools

    original = Odd.__dict__["take"]
    install_patch(Odd, "take", logging_wrapper([]))
    ours = Odd.__dict__["take"]

    @functools.wraps(ours)  # copies our patch's attributes, not what makes it ours
    def theirs(*args, **kwargs):
        return ours(*args, **kwargs)

    assert is_patch(ours) and not is_patch(theirs)
    Odd.take = theirs
    remove_patch(Odd, "take")  # not ours on top: left alone
    assert Odd.__dict__["take"] is theirs
    Odd.take = original

    # a foreign wrapt wrapper underneath: ours goes on top and comes off alone
    wrapt.wrap_function_wrapper(Odd, "take", lambda wrapped, instance, args, kwargs: wrapped(*args, **kwargs))
    foreign = Odd.__dict__["take"]
    assert not is_patch(foreign)
    install_patch(Odd, "take", logging_wrapper([]))
    assert Odd.__dict__["take"].__wrapped__ is foreign
    remove_patch(Odd, "take")
    assert Odd.__dict__["take"] is foreign
    Odd.take = original


def test_install_patch_when_a_classmethod_then_a_wrapt_patch_that_remove_patch_takes_off():
    class Quotes:
        @classmethod
        def last(cls, symbol: str) -> str:
            return symbol

    original = Quotes.__dict__["last"]
    calls: list = []
    install_patch(Quotes, "last", logging_wrapper(calls))
    patched = Quotes.__dict__["last"]

    assert Quotes.last("BTCUSDT") == "BTCUSDT"
    remove_patch(Quotes, "last")

    assert isinstance(patched, wrapt.FunctionWrapper) and is_patch(patched) and len(calls) == 1
    assert Quotes.__dict__["last"] is original
