"""Small builders for engine unit tests: values from public constructors, nothing poked.

Usage::

    from tests.unit.execution.builders import T0, bar, fill, ledger_with

    ledger = ledger_with(fill("BTCUSDT", Side.BUY, 0.01, 64_000.0))
"""
from __future__ import annotations

from typing import Iterable, List, Optional

from execution.clock import SimClock
from execution.config import AppConfig, config_from_dict
from execution.models import Bar, ChildOrder, Fill, Order, Side
from execution.positions import PositionsLedger

# 2026-01-05T00:00:00Z, the shipped config's start
T0 = 1_767_571_200.0


def clock(ts: float = T0) -> SimClock:
    return SimClock(ts)


def config(**sections: dict) -> AppConfig:
    """The default config with some sections' keys overridden: ``config(risk={"min_notional_usdt": 0})``."""
    return config_from_dict(sections)


def bar(symbol: str = "BTCUSDT", close: float = 100.0, ts: float = T0, *, high: Optional[float] = None,
        low: Optional[float] = None, open: Optional[float] = None, volume: float = 10.0) -> Bar:
    o = close if open is None else open
    return Bar(ts=ts, symbol=symbol, open=o, high=max(o, close) if high is None else high,
               low=min(o, close) if low is None else low, close=close, volume=volume)


def bars_from_closes(closes: Iterable[float], symbol: str = "BTCUSDT", start: float = T0, step: float = 60.0) -> List[Bar]:
    return [bar(symbol, c, start + i * step) for i, c in enumerate(closes)]


def fill(symbol: str, side: Side, quantity: float, price: float, *, ts: float = T0, fee: float = 0.0,
         reduce_only: bool = False, order_id: str = "O1-0") -> Fill:
    return Fill(order_id=order_id, parent_id=order_id.split("-")[0], symbol=symbol, side=side, quantity=quantity,
                price=price, fee=fee, ts=ts, reduce_only=reduce_only)


def ledger_with(*fills: Fill) -> PositionsLedger:
    ledger = PositionsLedger()
    for f in fills:
        ledger.apply_fill(f)
    return ledger


def order(symbol: str = "BTCUSDT", side: Side = Side.BUY, quantity: float = 1.0, *, ts: float = T0,
          reduce_only: bool = False, order_id: str = "E000001") -> Order:
    return Order(order_id=order_id, symbol=symbol, side=side, quantity=quantity, ts=ts, reduce_only=reduce_only,
                 purpose="exit" if reduce_only else "entry")


def child(symbol: str = "BTCUSDT", side: Side = Side.BUY, quantity: float = 1.0, *, reduce_only: bool = False,
          slice_index: int = 0, attempt: int = 0) -> ChildOrder:
    return ChildOrder(order_id=f"E000001-{slice_index}", parent_id="E000001", symbol=symbol, side=side,
                      quantity=quantity, reduce_only=reduce_only, slice_index=slice_index, attempt=attempt)


def journal_lines(path) -> List[dict]:
    import json

    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]

