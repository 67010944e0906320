"""A bracket-order strategy: a moving-average signal, a risk check, stop and take-profit children.

Usage::

    cerebro.addstrategy(BracketStrategy, fault="naked_entry", fault_at=100, on_bar=publish)
    strategy = cerebro.run()[0]
    strategy.records      # [{"kind": "order", ...}, {"kind": "trade", ...}, ...]

Each bar, for each data in the order of its name, ``next`` asks ``entry_signal`` for a side and,
when there is one, ``risk_check`` for a veto; an approved entry is a bracket: a market parent, a
stop child (the protection) and a limit child (the take-profit), both sized like the parent.
From bar ``fault_at`` (0-based) on, a fault changes what approved entries do:

- ``"naked_entry"``: a plain market order, no stop and no take-profit; the position stays open.
- ``"order_stall"``: nothing is sent; the entry waits in ``stalled``, a queue nobody drains,
  while ``entry_signal`` and ``risk_check`` go on running every bar.

``records`` is the run's deterministic account of its orders and closed trades, plain dicts.
Its ``ref`` values count from 1 within the run: backtrader numbers orders and trades with
process-wide counters, so its own refs differ between two runs in one process.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import backtrader as bt

FAULTS = (None, "naked_entry", "order_stall")
VETOES = ("position_open", "cooldown", "max_positions")


class BracketStrategy(bt.Strategy):
    """Fast/slow moving-average entries in brackets, at most ``max_positions`` symbols engaged."""

    params = (
        ("fault", None),             # None | "naked_entry" | "order_stall"
        ("fault_at", 100),           # first bar index (0-based) the fault applies to
        ("size", 10_000.0),          # notional per entry in cash; units = size / close
        ("take_profit_pct", 0.002),  # limit child this far beyond the entry bar's close
        ("stop_loss_pct", 0.0015),   # stop child this far against it
        ("fast", 5),                 # bars of the fast moving average
        ("slow", 20),                # bars of the slow one: no signal before that many bars
        ("max_positions", 2),        # symbols with a position or live orders at once
        ("cooldown", 2),             # bars after a symbol's exit before it may enter again
        ("on_bar", None),            # called with no arguments once per bar, after the bar's work
    )

    def __init__(self) -> None:
        if self.p.fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}, not {self.p.fault!r}")
        self.records: List[dict] = []
        self.stalled: List[Tuple[str, str]] = []     # order_stall: (symbol, side) never sent
        self._entries: Dict[str, List[bt.Order]] = {}  # symbol -> the orders of its last entry
        self._last_exit: Dict[str, int] = {}          # symbol -> bar index of its last closed trade
        self._order_refs: Dict[int, int] = {}         # backtrader ref -> ref within the run
        self._trade_refs: Dict[int, int] = {}

    @property
    def bar_index(self) -> int:
        """The index (0-based) of the bar being processed."""
        return len(self) - 1

    def next(self) -> None:
        for data in sorted(self.datas, key=lambda d: d._name):
            side = self.entry_signal(data)
            if side is not None and self.risk_check(data, side) is None:
                self._enter(data, side)
        if self.p.on_bar is not None:
            self.p.on_bar()

    def entry_signal(self, data: bt.feed.DataBase) -> Optional[str]:
        """"long" when the fast average is above the slow one and the last close rose, "short" mirrored."""
        if len(data) < self.p.slow:
            return None
        closes = data.close.get(size=self.p.slow)
        fast = sum(closes[-self.p.fast:]) / self.p.fast
        slow = sum(closes) / self.p.slow
        if fast > slow and closes[-1] > closes[-2]:
            return "long"
        if fast < slow and closes[-1] < closes[-2]:
            return "short"
        return None

    def risk_check(self, data: bt.feed.DataBase, side: str) -> Optional[str]:
        """None to approve an entry on ``data``, else the veto: one of ``VETOES``."""
        symbol = data._name
        if self._engaged(data):
            return "position_open"
        last_exit = self._last_exit.get(symbol)
        if last_exit is not None and self.bar_index - last_exit < self.p.cooldown:
            return "cooldown"
        if sum(map(self._engaged, self.datas)) >= self.p.max_positions:
            return "max_positions"
        return None

    def notify_order(self, order: bt.Order) -> None:
        parent = order.parent
        self.records.append({
            "kind": "order",
            "dt": self._now(),
            "ref": self._run_ref(self._order_refs, order.ref),
            "symbol": order.data._name,
            "side": "buy" if order.isbuy() else "sell",
            "exectype": order.getordername(),
            "status": order.getstatusname(),
            "parent_ref": None if parent is None else self._run_ref(self._order_refs, parent.ref),
            "executed_size": float(order.executed.size),
            "executed_price": order.executed.price,
        })

    def notify_trade(self, trade: bt.Trade) -> None:
        if not trade.isclosed:
            return
        symbol = trade.data._name
        self._last_exit[symbol] = self.bar_index
        self.records.append({
            "kind": "trade",
            "dt": self._now(),
            "ref": self._run_ref(self._trade_refs, trade.ref),
            "symbol": symbol,
            "pnl": trade.pnl,
            "pnlcomm": trade.pnlcomm,
        })

    def _engaged(self, data: bt.feed.DataBase) -> bool:
        """Whether ``data`` has a position or a live order of its last entry."""
        orders = self._entries.get(data._name, ())
        return bool(self.getposition(data).size) or any(o.alive() for o in orders)

    def _enter(self, data: bt.feed.DataBase, side: str) -> None:
        symbol, price = data._name, data.close[0]
        size = round(self.p.size / price, 6)
        fault = self.p.fault if self.bar_index >= self.p.fault_at else None
        if fault == "order_stall":
            self.stalled.append((symbol, side))
        elif fault == "naked_entry":
            order = self.buy if side == "long" else self.sell
            self._entries[symbol] = [order(data=data, size=size)]
        elif side == "long":
            self._entries[symbol] = self.buy_bracket(
                data=data, size=size, exectype=bt.Order.Market,
                stopprice=price * (1 - self.p.stop_loss_pct), limitprice=price * (1 + self.p.take_profit_pct))
        else:
            self._entries[symbol] = self.sell_bracket(
                data=data, size=size, exectype=bt.Order.Market,
                stopprice=price * (1 + self.p.stop_loss_pct), limitprice=price * (1 - self.p.take_profit_pct))

    def _now(self) -> str:
        """The bar being processed, ISO-8601 UTC."""
        return self.datetime.datetime(0).isoformat() + "Z"

    @staticmethod
    def _run_ref(refs: Dict[int, int], ref: int) -> int:
        return refs.setdefault(ref, len(refs) + 1)
