"""The order router: market orders, TWAP slicing, retry on a transient reject.

Usage::

    router = OrderRouter(cfg.router, venue, on_fill=ledger.apply_fill, journal=journal, clock=clock)
    result = router.route_order(order)     # RouteResult with one SliceResult per child slice

``route_order`` plans the slices and calls ``route_twap_slice`` once per child (a
single slice below the TWAP threshold); each slice calls the venue's
``place_order``, retrying a transient reject up to ``max_retries`` times.
"""
from __future__ import annotations

from typing import Callable, List, Optional

from execution.config import RouterConfig
from execution.journal import Journal
from execution.models import ChildOrder, Fill, Order, RouteResult, SliceResult
from execution.paper_exchange import PaperExchange


class OrderRouter:
    def __init__(self, cfg: RouterConfig, venue: PaperExchange, on_fill: Callable[[Fill], object],
                 journal: Journal, clock: Callable[[], float]) -> None:
        self.cfg = cfg
        self.venue = venue
        self.on_fill = on_fill
        self.journal = journal
        self.clock = clock

    def plan_slices(self, order: Order, price: Optional[float]) -> List[float]:
        """Child quantities: TWAP slices when the order's notional is above the threshold."""
        n = 1
        if price is not None and order.quantity * price > self.cfg.twap_threshold_usdt:
            n = self.cfg.twap_slices
        base = order.quantity / n
        return [base] * (n - 1) + [order.quantity - base * (n - 1)]

    def route_order(self, order: Order, price: Optional[float] = None) -> RouteResult:
        """Route ``order`` as one or more slices; fills go to the ledger and the journal."""
        self.journal.order(order)
        slices = tuple(self.route_twap_slice(order, i, qty) for i, qty in enumerate(self.plan_slices(order, price)))
        return RouteResult(order, slices, sum(s.fill.quantity for s in slices if s.fill is not None))

    def route_twap_slice(self, order: Order, slice_index: int, quantity: float) -> SliceResult:
        """Send one child slice, retrying transient rejects; book the fill."""
        attempts = 0
        while True:
            child = ChildOrder(order_id=f"{order.order_id}-{slice_index}", parent_id=order.order_id, symbol=order.symbol,
                               side=order.side, quantity=quantity, reduce_only=order.reduce_only,
                               slice_index=slice_index, attempt=attempts)
            attempts += 1
            result = self.venue.place_order(child)
            if result.fill is not None:
                self.journal.fill(result.fill)
                self.on_fill(result.fill)
                return SliceResult(order, slice_index, quantity, result.fill, attempts)
            if not result.transient or attempts > self.cfg.max_retries:
                rejected = SliceResult(order, slice_index, quantity, None, attempts, result.reject_reason)
                self.journal.reject(rejected, self.clock())
                return rejected
            self.journal.retry(child, result.reject_reason, self.clock())
