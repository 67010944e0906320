"""Build and run the bracket strategy on synthetic bars; read backtrader's broker for position views.

Usage::

    clock = BarClock(DEFAULT_START)
    records, strategy = run(seed=7, fault="naked_entry", clock=clock, on_bar=lambda: print(clock()))

    cerebro = build_cerebro(seed=7, bars=480, symbols=DEFAULT_SYMBOLS, fault=None, fault_at=100,
                            start=DEFAULT_START, bar_seconds=60)
    broker = cerebro.getbroker()
    open_positions(broker)         # [("BTCUSD", "long"), ...]
    protected_positions(broker)    # the open ones with a live stop on the closing side
    underwater_positions(broker)   # the open ones losing at the current close

    build_cerebro(..., strategy=MyBracketStrategy)   # a subclass instead of BracketStrategy

The feeds load bars as the run reaches them (``preload=False``): the first feed's current bar is
then always the bar being processed, so ``BarClock`` never reads ahead.
"""
from __future__ import annotations

import itertools
from datetime import datetime, timezone
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Type

import backtrader as bt

from examples.backtrader.market import BarFeed, synthetic_bars
from examples.backtrader.strategy import BracketStrategy

DEFAULT_SYMBOLS = ("BTCUSD", "ETHUSD", "SOLUSD")
DEFAULT_START = datetime(2026, 1, 5, tzinfo=timezone.utc).timestamp()  # 1767571200.0
DEFAULT_BARS = 480
CASH = 100_000.0
COMMISSION = 0.0002  # of the traded value, per side

PositionKey = Tuple[str, str]  # (symbol, "long" | "short")
STOP_TYPES = (bt.Order.Stop, bt.Order.StopLimit, bt.Order.StopTrail, bt.Order.StopTrailLimit)


class BarClock:
    """Engine time in Unix seconds: the bar being processed on the bound feed, else ``start``."""

    def __init__(self, start: float) -> None:
        self._start = float(start)
        self._data: Optional[bt.feed.DataBase] = None
        self._cached = (None, self._start)  # (raw backtrader time, Unix seconds): one swap, thread-safe

    def bind(self, data: bt.feed.DataBase) -> None:
        """Read the time from ``data`` (the first feed) from now on."""
        self._data = data

    def __call__(self) -> float:
        data = self._data
        if data is None or not len(data):
            return self._start
        raw = data.datetime[0]
        cached_raw, seconds = self._cached
        if raw != cached_raw:
            seconds = bt.num2date(raw).replace(tzinfo=timezone.utc).timestamp()
            self._cached = (raw, seconds)
        return seconds


def build_cerebro(*, seed: int, bars: int, symbols: Sequence[str], fault: Optional[str], fault_at: int,
                  start: float, bar_seconds: int, clock: Optional[BarClock] = None,
                  on_bar: Optional[Callable[[], None]] = None,
                  strategy: Type[BracketStrategy] = BracketStrategy) -> bt.Cerebro:
    """A cerebro with one feed per symbol (named after it), ``strategy``, cash and commission."""
    cerebro = bt.Cerebro(stdstats=False, preload=False)
    cerebro.broker.setcash(CASH)
    cerebro.broker.setcommission(commission=COMMISSION)
    for symbol in symbols:
        feed = BarFeed(dataname=synthetic_bars(symbol, seed, bars, start, bar_seconds),
                       timeframe=bt.TimeFrame.Seconds, compression=bar_seconds)
        cerebro.adddata(feed, name=symbol)
    cerebro.addstrategy(strategy, fault=fault, fault_at=fault_at, on_bar=on_bar)
    if clock is not None:
        clock.bind(cerebro.datas[0])
    return cerebro


def run(*, seed: int = 7, bars: int = DEFAULT_BARS, symbols: Sequence[str] = DEFAULT_SYMBOLS,
        fault: Optional[str] = None, fault_at: int = 100, start: float = DEFAULT_START, bar_seconds: int = 60,
        clock: Optional[BarClock] = None, on_bar: Optional[Callable[[], None]] = None
        ) -> Tuple[List[dict], BracketStrategy]:
    """Run to the last bar; the strategy's records and the strategy itself."""
    cerebro = build_cerebro(seed=seed, bars=bars, symbols=symbols, fault=fault, fault_at=fault_at,
                            start=start, bar_seconds=bar_seconds, clock=clock, on_bar=on_bar)
    strategy = cerebro.run()[0]
    return strategy.records, strategy


def open_positions(broker: bt.brokers.BackBroker) -> List[PositionKey]:
    """The (symbol, side) of every non-zero position, sorted."""
    return [key for key, _, _ in open_position_rows(broker)]


def stop_keys(broker: bt.brokers.BackBroker) -> List[PositionKey]:
    """The (symbol, side it protects) of every live stop order (a sell protects a long, a buy a short), sorted;
    a bracket child counts from its entry's fill (before that it protects nothing). A key with no open
    position is an orphaned stop."""
    return sorted({(o.data._name, "short" if o.isbuy() else "long") for o in _live_orders(broker)
                   if o.exectype in STOP_TYPES and (o.parent is None or o.parent.status == bt.Order.Completed)})


def protected_positions(broker: bt.brokers.BackBroker) -> List[PositionKey]:
    """The open positions with a live stop order on the closing side (a sell for a long, a buy for a short)."""
    stops = set(stop_keys(broker))
    return [key for key in open_positions(broker) if key in stops]


def underwater_positions(broker: bt.brokers.BackBroker) -> List[PositionKey]:
    """The open positions whose unrealised PnL at their data's current close is below zero."""
    return [key for key, data, pos in open_position_rows(broker)
            if broker.getcommissioninfo(data).profitandloss(pos.size, pos.price, data.close[0]) < 0]


def open_position_rows(broker: bt.brokers.BackBroker) -> List[Tuple[PositionKey, bt.feed.DataBase, bt.Position]]:
    """(key, data, position) of every non-zero position, sorted by key."""
    found = [((data._name, "long" if pos.size > 0 else "short"), data, pos)
             for data, pos in list(broker.positions.items()) if pos.size]
    return sorted(found, key=lambda row: row[0])


def _live_orders(broker: bt.brokers.BackBroker) -> Iterable[bt.Order]:
    """Orders that can still execute.

    ``submitted`` holds orders sent since the last bar, awaiting ``BackBroker.next``'s cash check
    (status Submitted); ``pending`` the accepted ones, bracket children included from the moment
    their parent is accepted, although they only become active the bar after it executes. While
    ``BackBroker.next`` walks ``pending``, a ``None`` marks the end of the walk.
    """
    return (o for o in itertools.chain(broker.submitted, broker.pending) if o is not None and o.alive())
