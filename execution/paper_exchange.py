"""The paper venue: fills market orders at the current bar's close with fees and slippage.

Usage::

    venue = PaperExchange(cfg.exchange, ledger, seed=7, clock=clock)
    venue.set_prices({"BTCUSDT": 64000.0})
    result = venue.place_order(child)      # ExchangeResult with a Fill, or a reject reason

Rejects are values: ``zero_quantity``, ``unknown_symbol``, ``reduce_only_no_position``,
and a seeded, occasional ``transient_unavailable`` that the router retries.
"""
from __future__ import annotations

import random
from typing import Callable, Dict

from execution.config import ExchangeConfig
from execution.models import ChildOrder, ExchangeResult, Fill, PositionSide, Side
from execution.positions import PositionsLedger

ZERO_QUANTITY = "zero_quantity"
UNKNOWN_SYMBOL = "unknown_symbol"
REDUCE_ONLY_NO_POSITION = "reduce_only_no_position"
TRANSIENT_UNAVAILABLE = "transient_unavailable"


class PaperExchange:
    def __init__(self, cfg: ExchangeConfig, ledger: PositionsLedger, seed: int, clock: Callable[[], float]) -> None:
        self.cfg = cfg
        self.ledger = ledger
        self.clock = clock
        self._rng = random.Random(seed * 7919 + 1)
        self._prices: Dict[str, float] = {}

    def set_prices(self, prices: Dict[str, float]) -> None:
        """The prices orders fill at until the next call (the current bar's closes)."""
        self._prices = dict(prices)

    def place_order(self, order: ChildOrder) -> ExchangeResult:
        """Fill ``order`` at the current price, or reject it with a reason."""
        if not order.quantity > 0:
            return ExchangeResult(order, reject_reason=ZERO_QUANTITY)
        price = self._prices.get(order.symbol)
        if price is None:
            return ExchangeResult(order, reject_reason=UNKNOWN_SYMBOL)
        if order.reduce_only:
            held = PositionSide.LONG if order.side is Side.SELL else PositionSide.SHORT
            if self.ledger.get(order.symbol, held) is None:
                return ExchangeResult(order, reject_reason=REDUCE_ONLY_NO_POSITION)
        if self._rng.random() < self.cfg.transient_reject_probability:
            return ExchangeResult(order, reject_reason=TRANSIENT_UNAVAILABLE, transient=True)
        slip = self.cfg.slippage_bps / 10_000
        fill_price = price * (1 + slip) if order.side is Side.BUY else price * (1 - slip)
        fee = fill_price * order.quantity * self.cfg.fee_rate
        fill = Fill(order_id=order.order_id, parent_id=order.parent_id, symbol=order.symbol, side=order.side,
                    quantity=order.quantity, price=fill_price, fee=fee, ts=self.clock(), reduce_only=order.reduce_only)
        return ExchangeResult(order, fill=fill)
