"""Plain, thread-safe in-process event state: the hot path's only write target.

Usage::

    state = EventState(clock=time.time)
    signals = state.series(METRIC_SIGNALS, {ATTR_SYMBOL: "BTCUSDT"})   # bind once
    state.hit(signals, EVENT_SIGNAL)                                      # count + last-event time
    state.stamp_prices({"BTCUSDT": 64_010.5, "ETHUSDT": 3_201.0})         # one cycle's closes, per symbol

Observable instruments (``otel_diag.instruments``) report this state at collection
time, so every metric reader sees the same numbers. A wrapper records an event once:
one counter series increment and one last-event time, under one lock. A cycle stamps its
bars once: per symbol, the time of its last bar and of its last price change.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from otel_diag._log import RateLimitedLog
from otel_diag.semconv import ATTR_OVERFLOW, METRIC_MARKET_DATA_LAST_UPDATE

_log = RateLimitedLog(logging.getLogger("otel_diag"))

DEFAULT_MAX_SERIES_PER_METRIC = 2000
_OVERFLOW_ATTRS = {ATTR_OVERFLOW: True}
_NEVER = float("-inf")


class Series:
    """One counter time series: its metric, its attribute set (built once) and its value."""

    __slots__ = ("metric", "attributes", "value")

    def __init__(self, metric: str, attributes: Mapping[str, object]) -> None:
        self.metric = metric
        self.attributes = dict(attributes)
        self.value = 0


_PLAIN = (str, bool, int, float)


def plain_attributes(attributes: Mapping[str, object]) -> Dict[str, object]:
    """``attributes`` with plain values only: str, bool, int, float, or a tuple of them; anything else as its str.

    Applied before a series is keyed, so two values that read the same are one series, and every
    reader — the SDK, which would otherwise clean values its own way, and the diagnostics'
    observations — sees the same attribute set.
    """
    out: Dict[str, object] = {}
    for key, value in attributes.items():
        if not isinstance(value, _PLAIN):
            if isinstance(value, (tuple, list)) and all(isinstance(v, _PLAIN) for v in value):
                value = tuple(value)
            else:
                value = str(value)
        out[str(key)] = value
    return out


@dataclass(frozen=True)
class ExitGauges:
    """The exit pipeline as the last exit scan (or ``update_exit_pipeline_status``) saw it."""

    open_positions: int = 0
    tp_sl_registered: int = 0
    tp_sl_orphaned: int = 0
    coverage: float = 0.0
    missing: Tuple[Tuple[str, str], ...] = ()  # (symbol, side) of open positions without TP/SL
    underwater_unprotected: Tuple[Tuple[str, str], ...] = ()
    missing_count: Optional[int] = None  # when set without keys (spec-style callers)
    underwater_count: Optional[int] = None

    @property
    def tp_sl_missing(self) -> int:
        return self.missing_count if self.missing_count is not None else len(self.missing)

    @property
    def underwater_without_tp_sl(self) -> int:
        return self.underwater_count if self.underwater_count is not None else len(self.underwater_unprotected)


PositionKey = Tuple[str, str]  # (symbol, side)


def position_key(key: Any) -> PositionKey:
    """``key`` as a (symbol, side) pair of strings: a pair (tuple or list) stays one, a bare symbol gets the side ``""``."""
    if isinstance(key, (tuple, list)) and key:
        return str(key[0]), str(key[1]) if len(key) > 1 else ""
    return str(key), ""


def coverage_gauges(open_keys: Any, protected_keys: Any, underwater_keys: Any = ()) -> ExitGauges:
    """The exit pipeline from three collections of (symbol, side) keys, the one definition for every engine.

    ``open_keys``: open positions in the ledger; ``protected_keys``: positions with a protective (TP/SL)
    order or entry; ``underwater_keys``: open positions losing money. Missing = open and not protected
    (a ledger/registry mismatch); orphaned = protected and not open; underwater without TP/SL = underwater
    and missing; coverage = (open - missing) / open, 0 when nothing is open.
    """
    opened = {position_key(k) for k in open_keys}
    protected = {position_key(k) for k in protected_keys}
    missing = opened - protected
    covered = len(opened) - len(missing)
    return ExitGauges(
        open_positions=len(opened),
        tp_sl_registered=covered,
        tp_sl_orphaned=len(protected - opened),
        coverage=covered / len(opened) if opened else 0.0,
        missing=tuple(sorted(missing)),
        underwater_unprotected=tuple(sorted({position_key(k) for k in underwater_keys} & missing)),
    )


class EventState:
    """Counts per series, last-event time (and its trace id) per event kind, exit gauges."""

    def __init__(self, clock: Callable[[], float], max_series_per_metric: int = DEFAULT_MAX_SERIES_PER_METRIC) -> None:
        self.clock = clock
        self.max_series_per_metric = max_series_per_metric
        self._lock = threading.Lock()
        self._series: Dict[Tuple[str, Tuple], Series] = {}
        self._by_metric: Dict[str, List[Series]] = {}
        self._overflowed: Dict[str, bool] = {}
        self._folded: Dict[str, int] = {}  # metric -> folded keys remembered
        self._last_time: Dict[str, float] = {}
        self._last_trace: Dict[str, int] = {}
        self._exit_gauges: Optional[ExitGauges] = None
        self._exit_source: Optional[Tuple[Callable[[Any], ExitGauges], Any]] = None
        self._market: Dict[str, List[float]] = {}  # symbol -> [last bar time, last price change time, last price]

    # -- binding (once per attribute set; off the hot path after the first call) --------
    def series(self, metric: str, attributes: Optional[Mapping[str, object]] = None) -> Series:
        """The series of ``metric`` with ``attributes``, created on first use, capped per metric."""
        attributes = plain_attributes(attributes) if attributes else None
        key = (metric, tuple(sorted(attributes.items())) if attributes else ())
        found = self._series.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._series.get(key)
            if found is not None:
                return found
            listed = self._by_metric.setdefault(metric, [])
            if len(listed) >= self.max_series_per_metric:
                self._overflowed[metric] = True
                overflow_key = (metric, ((ATTR_OVERFLOW, True),))
                found = self._series.get(overflow_key)
                if found is None:
                    found = self._series[overflow_key] = Series(metric, _OVERFLOW_ATTRS)
                    listed.append(found)
                # Remember folded keys so later calls are one dict lookup, but no more of them than
                # live series: unbounded attribute values must not grow this map without bound.
                folded = self._folded.get(metric, 0)
                if folded < self.max_series_per_metric:
                    self._series[key] = found
                    self._folded[metric] = folded + 1
                return found
            found = self._series[key] = Series(metric, attributes or {})
            listed.append(found)
            return found

    # -- the hot path ---------------------------------------------------------------------
    def hit(self, series: Optional[Series], event: Optional[str], trace_id: int = 0) -> None:
        """Count one event on ``series`` and stamp ``event``'s last time (never backwards)."""
        now = self.clock()
        # acquire/release rather than ``with``: half the cost, and this runs on every wrapped call.
        lock = self._lock
        lock.acquire()
        try:
            if series is not None:
                series.value += 1
            if event is not None:
                last = self._last_time
                if now >= last.get(event, _NEVER):
                    last[event] = now
                    if trace_id:
                        self._last_trace[event] = trace_id
        finally:
            lock.release()

    def hit2(self, first: Series, first_event: str, second: Series, second_event: str, trace_id: int = 0) -> None:
        """Two events of one call (a signal and its veto, an order and its router event): one clock read, one lock.

        The stamping is :meth:`hit`'s, written out for each event: a helper would cost a call on the hot path.
        """
        now = self.clock()
        lock = self._lock
        lock.acquire()
        try:
            first.value += 1
            second.value += 1
            last = self._last_time
            if now >= last.get(first_event, _NEVER):
                last[first_event] = now
                if trace_id:
                    self._last_trace[first_event] = trace_id
            if second_event != first_event and now >= last.get(second_event, _NEVER):  # a slice and its fill: one kind
                last[second_event] = now
                if trace_id:
                    self._last_trace[second_event] = trace_id
        finally:
            lock.release()

    def stamp_prices(self, prices: Mapping[str, float]) -> None:
        """One cycle's bars, ``{symbol: close}``: stamp each symbol's last bar, and its last price change when
        the close differs from the symbol's last one (a first bar is a change). One clock read, one lock.

        At most ``max_series_per_metric`` symbols are tracked (the caller passes its configured universe);
        a symbol beyond is left out and the metric marked overflowed. Times never go backwards.
        """
        now = self.clock()
        lock = self._lock
        lock.acquire()
        try:
            market = self._market
            for symbol, price in prices.items():
                seen = market.get(symbol)
                if seen is None:
                    if len(market) >= self.max_series_per_metric:
                        self._overflowed[METRIC_MARKET_DATA_LAST_UPDATE] = True
                        continue
                    market[symbol] = [now, now, price]
                elif now >= seen[0]:
                    seen[0] = now
                    if price != seen[2]:
                        seen[1] = now
                        seen[2] = price
        finally:
            lock.release()

    def stamp(self, event: str, trace_id: int = 0) -> None:
        """Stamp ``event``'s last time without counting a series."""
        self.hit(None, event, trace_id)

    def set_exit_gauges(self, gauges: Optional[ExitGauges]) -> None:
        with self._lock:
            self._exit_source = None
            self._exit_gauges = gauges

    def set_exit_source(self, derive: Callable[[Any], ExitGauges], source: Any) -> None:
        """Make ``derive(source)`` the exit gauges, computed when first read (at collection), not now.

        ``source`` must be immutable (an ``ExitScanResult`` is): the gauges are then exactly what
        they would have been if computed at once, and the hot path pays one attribute store.
        """
        self._exit_source = (derive, source)

    @property
    def exit_gauges(self) -> Optional[ExitGauges]:
        """The exit pipeline as the last exit scan (or ``set_exit_gauges``) saw it; None before any."""
        pending = self._exit_source
        if pending is None:
            return self._exit_gauges
        try:
            gauges = pending[0](pending[1])
        except Exception:
            _log.exception("exit-gauges", "otel_diag: deriving the exit gauges failed; keeping the previous ones")
            gauges = self._exit_gauges
        with self._lock:
            if self._exit_source is pending:  # unless a newer scan arrived meanwhile, remember them
                self._exit_source = None
                self._exit_gauges = gauges
        return gauges

    @exit_gauges.setter
    def exit_gauges(self, gauges: Optional[ExitGauges]) -> None:
        self.set_exit_gauges(gauges)

    # -- collection-time reads -------------------------------------------------------------
    def counter_points(self, metric: str) -> List[Tuple[int, Dict[str, object]]]:
        """(value, attributes) of every distinct series of ``metric``."""
        with self._lock:
            return [(s.value, s.attributes) for s in self._by_metric.get(metric, ())]

    def last_event_times(self) -> Dict[str, float]:
        with self._lock:
            return dict(self._last_time)

    def last_trace_ids(self) -> Dict[str, int]:
        with self._lock:
            return dict(self._last_trace)

    def market_data_times(self) -> Dict[str, Tuple[float, float]]:
        """Per symbol stamped by :meth:`stamp_prices`: (time of its last bar, time of its last price change)."""
        with self._lock:
            return {symbol: (seen[0], seen[1]) for symbol, seen in self._market.items()}

    def overflowed(self) -> Dict[str, bool]:
        with self._lock:
            return dict(self._overflowed)

    def reset(self) -> None:
        """Forget everything (tests and re-configuration)."""
        with self._lock:
            self._series.clear()
            self._by_metric.clear()
            self._overflowed.clear()
            self._folded.clear()
            self._last_time.clear()
            self._last_trace.clear()
            self._market.clear()
            self._exit_gauges = None
            self._exit_source = None

