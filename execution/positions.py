"""Positions ledger and TP/SL registry, both keyed by (symbol, position side).

Usage::

    ledger = PositionsLedger()
    ledger.apply_fill(fill)              # opens, adds to, reduces or closes a position
    registry = TpSlRegistry()
    registry.register(entry)             # replaces the entry for its (symbol, side)
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import replace
from typing import Dict, Iterable, Optional, Tuple

from execution.models import Fill, Position, PositionSide, TpSlEntry

Key = Tuple[str, str]


class PositionsLedger:
    """Open positions, realized PnL by UTC day, and each symbol's last exit time."""

    def __init__(self) -> None:
        self._positions: Dict[Key, Position] = {}
        self.realized_pnl = 0.0
        self._realized_by_day: Dict[str, float] = {}
        self.last_exit_ts: Dict[str, float] = {}
        self.fees_paid = 0.0

    def apply_fill(self, fill: Fill) -> Optional[Position]:
        """Book a fill; return the position after it (None once closed)."""
        self.fees_paid += fill.fee
        if fill.reduce_only:
            pos_side = PositionSide.LONG if fill.side.value == "sell" else PositionSide.SHORT
        else:
            pos_side = PositionSide.of(fill.side)
        key = (fill.symbol, pos_side.value)
        pos = self._positions.get(key)
        if not fill.reduce_only:
            if pos is None:
                pos = Position(fill.symbol, pos_side, fill.quantity, fill.price, fill.ts, fill.price)
            else:
                qty = pos.quantity + fill.quantity
                avg = (pos.entry_price * pos.quantity + fill.price * fill.quantity) / qty
                pos = replace(pos, quantity=qty, entry_price=avg, mark_price=fill.price)
            self._positions[key] = pos
            self._book(fill.ts, -fill.fee)
            return pos
        if pos is None:
            return None
        qty = min(fill.quantity, pos.quantity)
        sign = 1.0 if pos.side is PositionSide.LONG else -1.0
        self._book(fill.ts, sign * (fill.price - pos.entry_price) * qty - fill.fee)
        remaining = pos.quantity - qty
        if remaining <= pos.quantity * 1e-9:  # float dust left by slicing closes the position
            del self._positions[key]
            self.last_exit_ts[fill.symbol] = fill.ts
            return None
        pos = replace(pos, quantity=remaining, mark_price=fill.price)
        self._positions[key] = pos
        return pos

    def _book(self, ts: float, pnl: float) -> None:
        self.realized_pnl += pnl
        day = _utc_day(ts)
        self._realized_by_day[day] = self._realized_by_day.get(day, 0.0) + pnl

    def realized_on_day_of(self, ts: float) -> float:
        return self._realized_by_day.get(_utc_day(ts), 0.0)

    def mark(self, prices: Dict[str, float]) -> None:
        """Update mark prices of open positions."""
        for key, pos in self._positions.items():
            price = prices.get(pos.symbol)
            if price is not None and price != pos.mark_price:
                self._positions[key] = replace(pos, mark_price=price)

    def get(self, symbol: str, side: PositionSide) -> Optional[Position]:
        return self._positions.get((symbol, side.value))

    def positions(self) -> Tuple[Position, ...]:
        return tuple(self._positions[k] for k in sorted(self._positions))

    def symbol_notional(self, symbol: str) -> float:
        return sum(p.notional for p in self._positions.values() if p.symbol == symbol)

    def gross_exposure(self) -> float:
        return sum(p.notional for p in self._positions.values())

    def unrealized_pnl(self) -> float:
        return sum(p.unrealized_pnl for p in self._positions.values())

    def __len__(self) -> int:
        return len(self._positions)


class TpSlRegistry:
    """Take-profit / stop-loss levels per (symbol, position side)."""

    def __init__(self) -> None:
        self._entries: Dict[Key, TpSlEntry] = {}

    def register(self, entry: TpSlEntry) -> None:
        self._entries[entry.key] = entry

    def remove(self, symbol: str, side: PositionSide) -> Optional[TpSlEntry]:
        return self._entries.pop((symbol, side.value), None)

    def get(self, symbol: str, side: PositionSide) -> Optional[TpSlEntry]:
        return self._entries.get((symbol, side.value))

    def entries(self) -> Tuple[TpSlEntry, ...]:
        return tuple(self._entries[k] for k in sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


def _utc_day(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%d")


def tp_sl_levels(entry_price: float, side: PositionSide, take_profit_pct: float, stop_loss_pct: float) -> Tuple[float, float]:
    """(take_profit, stop_loss) prices for a position entered at ``entry_price``."""
    if side is PositionSide.LONG:
        return entry_price * (1 + take_profit_pct), entry_price * (1 - stop_loss_pct)
    return entry_price * (1 - take_profit_pct), entry_price * (1 + stop_loss_pct)


def keys(items: Iterable) -> set:
    return {i.key for i in items}
