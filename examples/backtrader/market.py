"""Seeded synthetic one-minute bars and the backtrader feed that serves them.

Usage::

    bars = synthetic_bars("BTCUSD", seed=7, bars=480, start=1767571200.0)
    bars[0]                      # (1767571200.0, open, high, low, close, volume)
    feed = BarFeed(dataname=bars, timeframe=bt.TimeFrame.Seconds, compression=60)
    cerebro.adddata(feed, name="BTCUSD")

Each symbol walks on its own: the generator is ``random.Random(f"{seed}:{symbol}")``, so a
symbol's bars depend on the seed and the symbol only, not on which other symbols are traded.
"""
from __future__ import annotations

import random
from datetime import datetime, timezone
from typing import List, Tuple

import backtrader as bt

Bar = Tuple[float, float, float, float, float, float]  # Unix seconds, open, high, low, close, volume

VOLATILITY = 0.001  # standard deviation of a bar's return
START_PRICES = {"BTCUSD": 95_000.0, "ETHUSD": 3_300.0, "SOLUSD": 190.0}  # others start near 100


def synthetic_bars(symbol: str, seed: int, bars: int, start: float, bar_seconds: int = 60) -> List[Bar]:
    """``bars`` bars of a random walk from ``start`` (Unix seconds), one every ``bar_seconds``.

    Each bar opens at the previous close; high and low reach a little beyond open and close.
    The first open lies within 5% of the symbol's ``START_PRICES`` entry, drawn like the rest.
    """
    rng = random.Random(f"{seed}:{symbol}")
    price = START_PRICES.get(symbol, 100.0) * rng.uniform(0.95, 1.05)
    out = []
    for i in range(bars):
        close = price * (1.0 + rng.gauss(0.0, VOLATILITY))
        high = max(price, close) * (1.0 + abs(rng.gauss(0.0, VOLATILITY / 2)))
        low = min(price, close) * (1.0 - abs(rng.gauss(0.0, VOLATILITY / 2)))
        volume = round(rng.uniform(50.0, 150.0), 3)
        out.append((float(start + i * bar_seconds), price, high, low, close, volume))
        price = close
    return out


class BarFeed(bt.feed.DataBase):
    """A backtrader feed over a list of ``Bar`` given as ``dataname`` (times naive UTC in the lines)."""

    def start(self) -> None:
        super().start()
        self._rows = iter(self.p.dataname)

    def _load(self) -> bool:
        row = next(self._rows, None)
        if row is None:
            return False
        ts, open_, high, low, close, volume = row
        lines = self.lines
        lines.datetime[0] = bt.date2num(datetime.fromtimestamp(ts, timezone.utc).replace(tzinfo=None))
        lines.open[0], lines.high[0], lines.low[0], lines.close[0] = open_, high, low, close
        lines.volume[0] = volume
        lines.openinterest[0] = 0.0
        return True
