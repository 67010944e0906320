"""The exit scanner: checks open positions against their TP/SL and routes closing orders.

Usage::

    scanner = ExitScanner(ledger, registry, dispatch=executor.dispatch, clock=clock)
    result = scanner.scan(bars)     # ExitScanResult: open positions, TP/SL entries, triggers, exposed

A level counts as hit when the bar's close (the price a closing market order fills at on
the paper venue) has reached it; a wick through a level does not fire, so an exit fills
at or beyond its level, less the venue's slippage.

``dispatch(order, price)`` sends a closing order through the router and returns the
RouteResult, or None when the order could not be routed; a trigger that was not routed
is not fired again for the same position until it is routed or the position is gone.
"""
from __future__ import annotations

import itertools
from typing import Callable, Dict, Optional, Set, Tuple

from execution.models import Bar, ExitScanResult, ExitTrigger, Order, Position, PositionSide, RouteResult
from execution.positions import PositionsLedger, TpSlRegistry

TAKE_PROFIT = "take_profit"
STOP_LOSS = "stop_loss"

Dispatch = Callable[[Order, Optional[float]], Optional[RouteResult]]


class ExitScanner:
    def __init__(self, ledger: PositionsLedger, registry: TpSlRegistry, dispatch: Dispatch, clock: Callable[[], float]) -> None:
        self.ledger = ledger
        self.registry = registry
        self.dispatch = dispatch
        self.clock = clock
        self._ids = itertools.count(1)
        self._pending: Set[Tuple[str, str]] = set()

    def scan(self, bars: Dict[str, Bar]) -> ExitScanResult:
        """One pass over the open positions: fire TP/SL hits, report coverage and exposure."""
        now = self.clock()
        positions = self.ledger.positions()
        open_keys = {p.key for p in positions}
        self._pending &= open_keys
        triggers = []
        for pos in positions:
            entry = self.registry.get(pos.symbol, pos.side)
            bar = bars.get(pos.symbol)
            if entry is None or bar is None or pos.key in self._pending:
                continue
            hit = _hit(pos, entry.take_profit, entry.stop_loss, bar)
            if hit is not None:
                reason, level = hit
                triggers.append(self.trigger_exit(pos, reason, level, bar.close))
        after = self.ledger.positions()
        entries = self.registry.entries()
        protected = {e.key for e in entries}
        underwater = tuple(p for p in after if p.key not in protected and p.unrealized_pnl < 0)
        return ExitScanResult(ts=now, open_positions=after, tp_sl_entries=entries,
                              triggers=tuple(triggers), underwater_without_tp_sl=underwater)

    def trigger_exit(self, position: Position, reason: str, level: float, price: float) -> ExitTrigger:
        """Route a reduce-only market order that closes ``position``."""
        order = Order(order_id=f"X{next(self._ids):06d}", symbol=position.symbol, side=position.side.entry_side.opposite,
                      quantity=position.quantity, ts=self.clock(), reduce_only=True, purpose="exit")
        routed = self.dispatch(order, price)
        if routed is None:
            self._pending.add(position.key)
        return ExitTrigger(symbol=position.symbol, side=position.side, reason=reason, level=level, price=price,
                           ts=order.ts, routed=routed is not None)


def _hit(pos: Position, take_profit: float, stop_loss: float, bar: Bar) -> Optional[Tuple[str, float]]:
    """Which level the bar's close (the price a closing market order fills at) has reached."""
    price = bar.close
    if pos.side is PositionSide.LONG:
        if price <= stop_loss:
            return STOP_LOSS, stop_loss
        if price >= take_profit:
            return TAKE_PROFIT, take_profit
    else:
        if price >= stop_loss:
            return STOP_LOSS, stop_loss
        if price <= take_profit:
            return TAKE_PROFIT, take_profit
    return None
