"""MethodWrapper: the class-level patch that caches each instance's bound wrapper, and forgets it on uninstrument."""
from __future__ import annotations

import gc
import inspect
import threading
import weakref

import pytest
import wrapt

import otel_diag
from otel_diag import semconv as sc
from otel_diag.instrumentor import ExecutionInstrumentor, import_engine
from otel_diag.wrappers import Binding, EventSpec, Holder, MethodWrapper, make_wrapper
from otel_diag.state import EventState

T0 = 1_767_571_200.0


class Failed(Exception):
    pass


class Venue:
    """A stand-in host class with an ordinary instance ``__dict__``."""

    def __init__(self, fee: float = 0.0) -> None:
        self.fee = fee

    def place(self, symbol: str, quantity: float, *, limit: float = 0.0) -> dict:
        """Place an order."""
        if quantity < 0:
            raise Failed(symbol)
        return {"symbol": symbol, "quantity": quantity + self.fee, "limit": limit}


class SlotVenue:
    __slots__ = ("fee",)

    def __init__(self) -> None:
        self.fee = 0.0

    def place(self, symbol: str, quantity: float, *, limit: float = 0.0) -> dict:
        return {"symbol": symbol, "quantity": quantity, "limit": limit}


def _count_calls(calls: list):
    def wrapper(wrapped, instance, args, kwargs):
        calls.append((instance, args, dict(kwargs)))
        return wrapped(*args, **kwargs)
    return wrapper


@pytest.fixture
def patched_venue():
    """Venue.place patched with a MethodWrapper that logs every call; restored afterwards."""
    original = Venue.__dict__["place"]
    calls: list = []
    patch = MethodWrapper(original, _count_calls(calls), "place")
    Venue.place = patch
    yield patch, calls
    patch.forget_instances()
    Venue.place = original


def test_first_access_when_instance_has_a_dict_then_bound_wrapper_cached_and_every_call_still_wrapped(patched_venue):
    patch, calls = patched_venue
    venue = Venue(fee=1.0)
    assert "place" not in vars(venue)

    first = venue.place("BTCUSDT", 2.0, limit=3.0)
    cached = vars(venue)["place"]
    second = venue.place("ETHUSDT", 1.0)

    assert isinstance(cached, wrapt.BoundFunctionWrapper) and cached._self_parent is patch
    assert first == {"symbol": "BTCUSDT", "quantity": 3.0, "limit": 3.0}
    assert second == {"symbol": "ETHUSDT", "quantity": 2.0, "limit": 0.0}
    # both calls went through the wrapper, with the instance and the arguments as given
    assert [(c[0], c[1], c[2]) for c in calls] == [(venue, ("BTCUSDT", 2.0), {"limit": 3.0}),
                                                   (venue, ("ETHUSDT", 1.0), {})]


def test_cached_wrapper_when_inspected_or_raising_then_signature_doc_and_exception_are_the_originals(patched_venue):
    venue = Venue()
    venue.place("X", 1.0)  # cache it

    assert inspect.signature(venue.place) == inspect.signature(Venue(fee=0).place.__wrapped__)
    assert venue.place.__doc__ == "Place an order."
    assert venue.place.__name__ == "place"
    with pytest.raises(Failed) as info:
        venue.place("BAD", -1.0)
    assert info.value.args == ("BAD",)


def test_two_instances_when_cached_then_each_binds_its_own_self(patched_venue):
    a, b = Venue(fee=1.0), Venue(fee=10.0)

    assert a.place("S", 1.0)["quantity"] == 2.0
    assert b.place("S", 1.0)["quantity"] == 11.0
    assert a.place("S", 1.0)["quantity"] == 2.0


def test_forget_instances_when_called_then_instances_see_the_class_attribute_again(patched_venue):
    patch, calls = patched_venue
    venue = Venue()
    venue.place("S", 1.0)
    venue.other = "kept"

    patch.forget_instances()

    assert "place" not in vars(venue)
    assert vars(venue)["other"] == "kept"
    venue.place("S", 1.0)  # the class patch still wraps, and caches anew
    assert len(calls) == 2 and "place" in vars(venue)


def test_forget_instances_when_user_replaced_the_attribute_then_left_alone(patched_venue):
    patch, _ = patched_venue
    venue = Venue()
    venue.place("S", 1.0)
    mine = lambda *a, **k: "mine"  # noqa: E731 - a user's own instance attribute
    venue.place = mine

    patch.forget_instances()

    assert venue.place is mine


def test_slots_instance_when_no_dict_then_class_patch_still_wraps_every_call():
    calls: list = []
    original = SlotVenue.__dict__["place"]
    SlotVenue.place = MethodWrapper(original, _count_calls(calls), "place")
    try:
        venue = SlotVenue()
        assert venue.place("S", 1.0) == {"symbol": "S", "quantity": 1.0, "limit": 0.0}
        assert venue.place("S", 2.0)["quantity"] == 2.0
        assert len(calls) == 2
    finally:
        SlotVenue.place = original


def test_cache_when_instance_dropped_then_reclaimed_by_the_cycle_collector():
    original = Venue.__dict__["place"]
    patch = MethodWrapper(original, lambda wrapped, instance, args, kwargs: wrapped(*args, **kwargs), "place")
    Venue.place = patch
    try:
        venue = Venue()
        venue.place("S", 1.0)
        ref = weakref.ref(venue)

        del venue
        gc.collect()  # the cached bound wrapper refers back to its instance: a cycle, not a leak

        assert ref() is None
        patch.forget_instances()  # nothing left to forget: no error
    finally:
        Venue.place = original


def test_first_access_when_eight_threads_race_then_one_cache_entry_and_exact_counts():
    state = EventState(lambda: T0)
    holder = Holder()
    holder.binding = Binding(state, None)

    def record(b, args, kwargs, result, trace_id):
        b.state.hit(b.signals[args[0]], sc.EVENT_SIGNAL, trace_id)

    original = Venue.__dict__["place"]
    patch = MethodWrapper(original, make_wrapper(EventSpec("venue.place", record), holder), "place")
    Venue.place = patch
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
        points = state.counter_points(sc.METRIC_SIGNALS)
        assert points == [(4000, {sc.ATTR_SYMBOL: "BTCUSDT"})]
        assert isinstance(vars(venue)["place"], wrapt.BoundFunctionWrapper)
    finally:
        patch.forget_instances()
        Venue.place = original


# -- the engine, as the instrumentor patches it ------------------------------------------------------------
def test_engine_instance_when_built_before_configure_then_recorded_and_restored_after_shutdown():
    import_engine()
    from execution.config import RiskConfig, StrategyConfig
    from execution.models import Side, Signal
    from execution.positions import PositionsLedger
    from execution.risk_limits import RiskEngine

    risk = RiskEngine(RiskConfig(), StrategyConfig(), PositionsLedger(), lambda: T0)  # built before instrumentation
    assert "check" not in vars(risk)

    otel_diag.configure(clock=lambda: T0, tracing=False, env={})
    assert "execution.risk_limits.RiskEngine.check" in ExecutionInstrumentor.patched()
    decisions = [risk.check(Signal(symbol, Side.BUY, price, T0, 1.0, volatility))
                 for symbol in ("BTCUSDT", "ETHUSDT") for price, volatility in ((100.0, 0.001), (100.0, 0.01))]
    assert isinstance(vars(risk)["check"], wrapt.BoundFunctionWrapper)
    derived = otel_diag.get_telemetry().snapshot()

    otel_diag.shutdown()

    vetoed = [(d.reason, d.signal.symbol) for d in decisions if not d.approved]
    assert vetoed, "the high-volatility signal is sized below min_notional"
    assert derived.signals_by_symbol == {"BTCUSDT": 2, "ETHUSDT": 2}
    assert derived.vetoes == {key: vetoed.count(key) for key in vetoed}
    assert "check" not in vars(risk)
    assert not isinstance(type(risk).__dict__["check"], wrapt.FunctionWrapper)
