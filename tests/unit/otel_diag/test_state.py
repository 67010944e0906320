"""EventState: the hot path's only write target — exact counts, last-event times that never go back."""
from __future__ import annotations

import itertools
import threading

from otel_diag import semconv as sc
from otel_diag.semconv import ATTR_OVERFLOW
from otel_diag.state import EventState, ExitGauges

THREADS = 8
HITS_PER_THREAD = 5_000


class StepClock:
    """A thread-safe clock that moves one second forward per reading (``itertools.count`` is atomic)."""

    def __init__(self, start: float = 1_767_571_200.0) -> None:
        self._ticks = itertools.count()
        self.start = start

    def __call__(self) -> float:
        return self.start + next(self._ticks)


def test_hit_when_series_bound_once_then_counts_and_stamps_the_event():
    state = EventState(lambda: 100.0)
    signals = state.series(sc.METRIC_SIGNALS, {sc.ATTR_SYMBOL: "BTCUSDT"})

    state.hit(signals, sc.EVENT_SIGNAL)
    state.hit(signals, sc.EVENT_SIGNAL, trace_id=0xABC)

    assert state.counter_points(sc.METRIC_SIGNALS) == [(2, {sc.ATTR_SYMBOL: "BTCUSDT"})]
    assert state.last_event_times() == {sc.EVENT_SIGNAL: 100.0}
    assert state.last_trace_ids() == {sc.EVENT_SIGNAL: 0xABC}


def test_series_when_same_attributes_in_any_order_then_same_series():
    state = EventState(lambda: 0.0)
    a = state.series(sc.METRIC_VETOES, {sc.ATTR_VETO_REASON: "min_notional", sc.ATTR_SYMBOL: "BTCUSDT"})
    b = state.series(sc.METRIC_VETOES, {sc.ATTR_SYMBOL: "BTCUSDT", sc.ATTR_VETO_REASON: "min_notional"})

    assert a is b


def test_hit_when_clock_goes_backwards_then_last_event_time_stays():
    times = iter([50.0, 40.0, 60.0])
    state = EventState(lambda: next(times))

    state.hit(None, sc.EVENT_ORDER, trace_id=1)
    state.hit(None, sc.EVENT_ORDER, trace_id=2)  # an earlier time: neither time nor trace id move
    assert state.last_event_times()[sc.EVENT_ORDER] == 50.0
    assert state.last_trace_ids()[sc.EVENT_ORDER] == 1

    state.stamp(sc.EVENT_ORDER, trace_id=3)
    assert state.last_event_times()[sc.EVENT_ORDER] == 60.0
    assert state.last_trace_ids()[sc.EVENT_ORDER] == 3


def test_hit2_when_two_events_of_one_call_then_both_counted_and_stamped_at_one_time():
    times = iter([50.0, 40.0, 70.0])
    state = EventState(lambda: next(times))
    orders = state.series(sc.METRIC_ORDERS, {sc.ATTR_SYMBOL: "BTCUSDT"})
    route = state.series(sc.METRIC_ROUTER_EVENTS, {sc.ATTR_ROUTER_EVENT: sc.ROUTER_ROUTE})
    slices = state.series(sc.METRIC_ROUTER_EVENTS, {sc.ATTR_ROUTER_EVENT: sc.ROUTER_TWAP_SLICE})
    fills = state.series(sc.METRIC_ROUTER_EVENTS, {sc.ATTR_ROUTER_EVENT: sc.ROUTER_FILL})

    state.hit2(orders, sc.EVENT_ORDER, route, sc.EVENT_ROUTER, trace_id=1)
    state.hit2(slices, sc.EVENT_ROUTER, fills, sc.EVENT_ROUTER, trace_id=2)  # earlier time: stamps stay
    state.hit2(slices, sc.EVENT_ROUTER, fills, sc.EVENT_ROUTER)              # untraced: trace id stays

    assert state.counter_points(sc.METRIC_ORDERS) == [(1, {sc.ATTR_SYMBOL: "BTCUSDT"})]
    assert sorted((v, a[sc.ATTR_ROUTER_EVENT]) for v, a in state.counter_points(sc.METRIC_ROUTER_EVENTS)) == [
        (1, sc.ROUTER_ROUTE), (2, sc.ROUTER_FILL), (2, sc.ROUTER_TWAP_SLICE)]
    assert state.last_event_times() == {sc.EVENT_ORDER: 50.0, sc.EVENT_ROUTER: 70.0}
    assert state.last_trace_ids() == {sc.EVENT_ORDER: 1, sc.EVENT_ROUTER: 1}


def test_hit_when_untraced_then_keeps_the_last_trace_id():
    state = EventState(StepClock())
    state.hit(None, sc.EVENT_ROUTER, trace_id=7)
    state.hit(None, sc.EVENT_ROUTER)  # trace id 0 (tracing off or not sampled)

    assert state.last_trace_ids() == {sc.EVENT_ROUTER: 7}


def test_hit_when_eight_threads_race_then_counts_are_exact_and_time_never_goes_back():
    clock = StepClock()
    state = EventState(clock)
    shared = state.series(sc.METRIC_ROUTER_EVENTS, {sc.ATTR_ROUTER_EVENT: sc.ROUTER_FILL})
    start = threading.Barrier(THREADS + 1)
    done = threading.Event()
    seen_backwards = []

    def worker(n: int) -> None:
        own = state.series(sc.METRIC_SIGNALS, {sc.ATTR_SYMBOL: f"SYM{n}"})
        start.wait()
        for _ in range(HITS_PER_THREAD):
            state.hit(shared, sc.EVENT_ROUTER)
            state.hit(own, sc.EVENT_SIGNAL)

    def watcher() -> None:
        last = float("-inf")
        start.wait()
        while not done.is_set():
            now = state.last_event_times().get(sc.EVENT_ROUTER, float("-inf"))
            if now < last:
                seen_backwards.append((last, now))
            last = now

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    watch = threading.Thread(target=watcher)
    for t in [*threads, watch]:
        t.start()
    for t in threads:
        t.join()
    done.set()
    watch.join()

    fills = state.counter_points(sc.METRIC_ROUTER_EVENTS)
    assert fills == [(THREADS * HITS_PER_THREAD, {sc.ATTR_ROUTER_EVENT: sc.ROUTER_FILL})]
    signals = state.counter_points(sc.METRIC_SIGNALS)
    assert sorted(v for v, _ in signals) == [HITS_PER_THREAD] * THREADS
    assert seen_backwards == []
    # every hit read the clock once; the last time kept is the latest reading of all
    latest = clock() - 1
    assert max(state.last_event_times().values()) == latest


def test_series_when_eight_threads_bind_the_same_key_then_one_series():
    state = EventState(lambda: 0.0)
    start = threading.Barrier(THREADS)
    got = []

    def bind() -> None:
        start.wait()
        got.append(state.series(sc.METRIC_ORDERS, {sc.ATTR_SYMBOL: "ETHUSDT"}))

    threads = [threading.Thread(target=bind) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len({id(s) for s in got}) == 1
    assert len(state.counter_points(sc.METRIC_ORDERS)) == 1


def test_series_when_cap_reached_then_folds_into_one_overflow_series():
    state = EventState(lambda: 0.0, max_series_per_metric=2)
    for symbol in ("A", "B", "C", "D", "C"):
        state.hit(state.series(sc.METRIC_SIGNALS, {sc.ATTR_SYMBOL: symbol}), sc.EVENT_SIGNAL)

    points = state.counter_points(sc.METRIC_SIGNALS)
    assert points == [(1, {sc.ATTR_SYMBOL: "A"}), (1, {sc.ATTR_SYMBOL: "B"}), (3, {ATTR_OVERFLOW: True})]
    assert state.overflowed() == {sc.METRIC_SIGNALS: True}
    assert state.series(sc.METRIC_ORDERS, {sc.ATTR_SYMBOL: "Z"}) is not None
    assert sc.METRIC_ORDERS not in state.overflowed()


def test_exit_gauges_when_counts_given_without_keys_then_counts_win():
    keyed = ExitGauges(open_positions=3, missing=(("BTCUSDT", "long"),), underwater_unprotected=())
    counted = ExitGauges(open_positions=3, missing_count=2, underwater_count=1)

    assert (keyed.tp_sl_missing, keyed.underwater_without_tp_sl) == (1, 0)
    assert (counted.tp_sl_missing, counted.underwater_without_tp_sl) == (2, 1)


def test_reset_when_called_then_forgets_everything():
    state = EventState(lambda: 5.0)
    state.hit(state.series(sc.METRIC_EXIT_SCANS), sc.EVENT_EXIT_SCAN, trace_id=9)
    state.set_exit_gauges(ExitGauges(open_positions=1))

    state.reset()

    assert state.counter_points(sc.METRIC_EXIT_SCANS) == []
    assert state.last_event_times() == {} and state.last_trace_ids() == {}
    assert state.exit_gauges is None


def test_series_when_attribute_values_are_not_plain_then_kept_as_their_text():
    class Reason:
        def __str__(self) -> str:
            return "custom_reason"

    state = EventState(lambda: 0.0)
    series = state.series(sc.METRIC_VETOES, {sc.ATTR_VETO_REASON: Reason(), sc.ATTR_SYMBOL: "BTCUSDT"})
    state.hit(series, sc.EVENT_VETO)

    assert state.counter_points(sc.METRIC_VETOES) == [(1, {sc.ATTR_VETO_REASON: "custom_reason",
                                                          sc.ATTR_SYMBOL: "BTCUSDT"})]


def test_series_when_two_values_read_the_same_then_one_series_and_sequences_stay_tuples():
    state = EventState(lambda: 0.0)
    a = state.series(sc.METRIC_VETOES, {sc.ATTR_VETO_REASON: None, sc.ATTR_SYMBOL: "BTCUSDT"})
    b = state.series(sc.METRIC_VETOES, {sc.ATTR_VETO_REASON: "None", sc.ATTR_SYMBOL: "BTCUSDT"})
    c = state.series(sc.METRIC_EXIT_TRIGGERS, {sc.ATTR_EXIT_REASON: ["stop_loss", 2]})

    assert a is b
    assert c.attributes == {sc.ATTR_EXIT_REASON: ("stop_loss", 2)}
