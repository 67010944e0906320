"""execution.order_router: market orders, TWAP slices (one call each), retry on transient rejects."""
from __future__ import annotations

from typing import List

import pytest

from execution import paper_exchange as px
from execution.config import RouterConfig
from execution.journal import Journal
from execution.models import ChildOrder, ExchangeResult, Fill, Side
from execution.order_router import OrderRouter
from tests.unit.execution.builders import T0, clock, journal_lines, order


class ScriptedVenue:
    """Answers ``place_order`` from a script of reject reasons (None = fill); fills once the script runs out."""

    TRANSIENT = {px.TRANSIENT_UNAVAILABLE}

    def __init__(self, *script) -> None:
        self.script = list(script)
        self.calls: List[ChildOrder] = []

    def place_order(self, child: ChildOrder) -> ExchangeResult:
        self.calls.append(child)
        reason = self.script.pop(0) if self.script else None
        if reason is not None:
            return ExchangeResult(child, reject_reason=reason, transient=reason in self.TRANSIENT)
        return ExchangeResult(child, fill=Fill(order_id=child.order_id, parent_id=child.parent_id, symbol=child.symbol,
                                               side=child.side, quantity=child.quantity, price=100.0, fee=0.01,
                                               ts=T0, reduce_only=child.reduce_only))


def _router(venue, journal=None, **router):
    fills: List[Fill] = []
    r = OrderRouter(RouterConfig(**router), venue, on_fill=fills.append, journal=journal or Journal(None), clock=clock(T0))
    return r, fills


def test_plan_slices_when_notional_below_threshold_then_one_slice():
    router, _ = _router(ScriptedVenue(), twap_threshold_usdt=900.0)

    assert router.plan_slices(order(quantity=8.0), price=100.0) == [8.0]


def test_plan_slices_when_no_price_then_one_slice():
    router, _ = _router(ScriptedVenue(), twap_threshold_usdt=900.0)

    assert router.plan_slices(order(quantity=80.0), price=None) == [80.0]


def test_plan_slices_when_notional_above_threshold_then_twap_slices_summing_to_quantity():
    # Arrange
    router, _ = _router(ScriptedVenue(), twap_threshold_usdt=900.0, twap_slices=3)

    # Act
    plan = router.plan_slices(order(quantity=10.0), price=100.0)

    # Assert
    assert len(plan) == 3
    assert plan[0] == plan[1] == pytest.approx(10.0 / 3)
    assert sum(plan) == pytest.approx(10.0)


def test_route_order_when_twap_then_one_route_twap_slice_call_per_child():
    # Arrange: count calls through a subclass (the instrumentation patches this method by name)
    seen = []

    class Spy(OrderRouter):
        def route_twap_slice(self, o, slice_index, quantity):
            seen.append((slice_index, quantity))
            return super().route_twap_slice(o, slice_index, quantity)

    venue = ScriptedVenue()
    router = Spy(RouterConfig(twap_threshold_usdt=900.0, twap_slices=4), venue, on_fill=lambda f: None,
                 journal=Journal(None), clock=clock())

    # Act
    result = router.route_order(order(quantity=20.0), price=100.0)

    # Assert
    assert [i for i, _ in seen] == [0, 1, 2, 3]
    assert [c.order_id for c in venue.calls] == ["E000001-0", "E000001-1", "E000001-2", "E000001-3"]
    assert result.filled_quantity == pytest.approx(20.0)
    assert len(result.slices) == 4 and len(result.fills) == 4 and not result.rejected


def test_route_order_when_filled_then_fills_go_to_ledger_callback_and_journal(tmp_path):
    # Arrange
    journal = Journal(str(tmp_path / "journal.jsonl"))
    router, fills = _router(ScriptedVenue(), journal)

    # Act
    router.route_order(order(quantity=1.0), price=100.0)
    journal.close()

    # Assert
    assert [f.order_id for f in fills] == ["E000001-0"]
    records = journal_lines(tmp_path / "journal.jsonl")
    assert [r["type"] for r in records] == ["order", "fill"]
    assert records[1]["parent_id"] == "E000001"


def test_route_twap_slice_when_transient_reject_then_retried_and_filled(tmp_path):
    # Arrange
    journal = Journal(str(tmp_path / "journal.jsonl"))
    venue = ScriptedVenue(px.TRANSIENT_UNAVAILABLE, px.TRANSIENT_UNAVAILABLE)
    router, fills = _router(venue, journal, max_retries=2)

    # Act
    result = router.route_twap_slice(order(), 0, 1.0)
    journal.close()

    # Assert
    assert result.fill is not None and result.attempts == 3 and result.reject_reason is None
    assert [c.attempt for c in venue.calls] == [0, 1, 2]
    assert len(fills) == 1
    records = journal_lines(tmp_path / "journal.jsonl")
    assert [(r["type"], r.get("retried")) for r in records] == [("reject", True), ("reject", True), ("fill", None)]
    assert journal.retries == 2 and journal.rejects == 0


def test_route_twap_slice_when_transient_rejects_exhaust_retries_then_rejected_and_journaled(tmp_path):
    # Arrange
    journal = Journal(str(tmp_path / "journal.jsonl"))
    venue = ScriptedVenue(*[px.TRANSIENT_UNAVAILABLE] * 5)
    router, fills = _router(venue, journal, max_retries=2)

    # Act
    result = router.route_twap_slice(order(), 0, 1.0)
    journal.close()

    # Assert
    assert result.fill is None and result.attempts == 3
    assert result.reject_reason == px.TRANSIENT_UNAVAILABLE
    assert fills == []
    final = journal_lines(tmp_path / "journal.jsonl")[-1]
    assert final == {"type": "reject", "ts": "2026-01-05T00:00:00.000000+00:00", "order_id": "E000001",
                     "symbol": "BTCUSDT", "slice_index": 0, "attempts": 3, "reason": "transient_unavailable",
                     "retried": False}


def test_route_twap_slice_when_permanent_reject_then_not_retried():
    venue = ScriptedVenue(px.ZERO_QUANTITY)
    router, _ = _router(venue, max_retries=5)

    result = router.route_twap_slice(order(quantity=0.0), 0, 0.0)

    assert len(venue.calls) == 1
    assert result.attempts == 1 and result.reject_reason == px.ZERO_QUANTITY


def test_route_twap_slice_when_no_retries_configured_then_one_attempt():
    venue = ScriptedVenue(px.TRANSIENT_UNAVAILABLE)
    router, _ = _router(venue, max_retries=0)

    result = router.route_twap_slice(order(), 0, 1.0)

    assert result.fill is None and len(venue.calls) == 1


def test_route_order_when_one_slice_rejected_then_partial_fill_reported():
    # Arrange: the second of three slices is refused for good
    venue = ScriptedVenue(None, px.UNKNOWN_SYMBOL, None)
    router, fills = _router(venue, twap_threshold_usdt=900.0, twap_slices=3)

    # Act
    result = router.route_order(order(quantity=30.0), price=100.0)

    # Assert
    assert [s.fill is not None for s in result.slices] == [True, False, True]
    assert result.filled_quantity == pytest.approx(20.0)
    assert len(fills) == 2 and not result.rejected


def test_route_order_when_every_slice_rejected_then_rejected():
    router, _ = _router(ScriptedVenue(px.UNKNOWN_SYMBOL))

    result = router.route_order(order(quantity=1.0), price=100.0)

    assert result.rejected and result.fills == ()


def test_route_order_when_reduce_only_then_children_reduce_only():
    venue = ScriptedVenue()
    router, _ = _router(venue)

    router.route_order(order(side=Side.SELL, quantity=1.0, reduce_only=True), price=100.0)

    assert all(c.reduce_only and c.side is Side.SELL for c in venue.calls)
