"""execution.exit_scanner: TP/SL hits route closing orders; the result reports coverage and exposure."""
from __future__ import annotations

from typing import List, Optional

import pytest

from execution.exit_scanner import STOP_LOSS, TAKE_PROFIT, ExitScanner
from execution.models import Order, PositionSide, RouteResult, Side, TpSlEntry
from execution.positions import PositionsLedger, TpSlRegistry
from tests.unit.execution.builders import T0, bar, clock, fill, ledger_with


class Dispatch:
    """Records closing orders; when routing, books a full closing fill like the real router would."""

    def __init__(self, ledger: PositionsLedger, routes: bool = True) -> None:
        self.ledger = ledger
        self.routes = routes
        self.orders: List[Order] = []

    def __call__(self, order: Order, price: Optional[float]) -> Optional[RouteResult]:
        self.orders.append(order)
        if not self.routes:
            return None
        self.ledger.apply_fill(fill(order.symbol, order.side, order.quantity, price, reduce_only=True))
        return RouteResult(order, (), order.quantity)


def _setup(*entries: TpSlEntry, routes: bool = True, long_qty: float = 2.0, short: bool = False):
    ledger = ledger_with(fill("BTCUSDT", Side.BUY, long_qty, 100.0))
    if short:
        ledger.apply_fill(fill("ETHUSDT", Side.SELL, 1.0, 50.0))
    registry = TpSlRegistry()
    for e in entries:
        registry.register(e)
    dispatch = Dispatch(ledger, routes)
    return ExitScanner(ledger, registry, dispatch=dispatch, clock=clock(T0 + 120)), ledger, registry, dispatch


LONG_LEVELS = TpSlEntry("BTCUSDT", PositionSide.LONG, take_profit=101.0, stop_loss=99.0, registered_at=T0)
SHORT_LEVELS = TpSlEntry("ETHUSDT", PositionSide.SHORT, take_profit=49.0, stop_loss=51.0, registered_at=T0)


def test_scan_when_close_reaches_take_profit_then_reduce_only_close_routed():
    # Arrange
    scanner, ledger, _, dispatch = _setup(LONG_LEVELS)

    # Act
    result = scanner.scan({"BTCUSDT": bar("BTCUSDT", 101.5)})

    # Assert
    (trigger,) = result.triggers
    assert (trigger.symbol, trigger.side, trigger.reason, trigger.level, trigger.price) == \
        ("BTCUSDT", PositionSide.LONG, TAKE_PROFIT, 101.0, 101.5)
    assert trigger.routed and trigger.ts == T0 + 120
    (o,) = dispatch.orders
    assert (o.side, o.quantity, o.reduce_only, o.purpose) == (Side.SELL, 2.0, True, "exit")
    assert o.order_id.startswith("X")
    assert result.open_positions == ()  # reported after the close


def test_scan_when_close_reaches_stop_loss_then_stop_loss_trigger():
    scanner, _, _, _ = _setup(LONG_LEVELS)

    result = scanner.scan({"BTCUSDT": bar("BTCUSDT", 98.5)})

    assert [t.reason for t in result.triggers] == [STOP_LOSS]
    assert result.triggers[0].level == 99.0


def test_scan_when_short_and_price_rises_to_stop_then_buy_to_close():
    scanner, _, _, dispatch = _setup(LONG_LEVELS, SHORT_LEVELS, short=True)

    result = scanner.scan({"BTCUSDT": bar("BTCUSDT", 100.0), "ETHUSDT": bar("ETHUSDT", 51.2)})

    assert [(t.symbol, t.reason) for t in result.triggers] == [("ETHUSDT", STOP_LOSS)]
    assert dispatch.orders[0].side is Side.BUY


def test_scan_when_short_and_price_falls_to_take_profit_then_take_profit():
    scanner, _, _, _ = _setup(LONG_LEVELS, SHORT_LEVELS, short=True)

    result = scanner.scan({"BTCUSDT": bar("BTCUSDT", 100.0), "ETHUSDT": bar("ETHUSDT", 48.9)})

    assert [(t.symbol, t.reason) for t in result.triggers] == [("ETHUSDT", TAKE_PROFIT)]


def test_scan_when_price_between_levels_then_no_trigger_and_full_coverage():
    # Act
    scanner, _, _, dispatch = _setup(LONG_LEVELS)
    result = scanner.scan({"BTCUSDT": bar("BTCUSDT", 100.2, high=101.5, low=98.5)})

    # Assert: a wick through both levels does not count, the close (the fill price) is inside
    assert result.triggers == () and dispatch.orders == []
    assert [p.key for p in result.open_positions] == [("BTCUSDT", "long")]
    assert [e.key for e in result.tp_sl_entries] == [("BTCUSDT", "long")]
    assert result.underwater_without_tp_sl == ()
    assert result.ts == T0 + 120


def test_scan_when_position_has_no_tp_sl_and_is_losing_then_reported_underwater():
    # Arrange: the short has no registry entry and is marked above its entry
    scanner, ledger, _, dispatch = _setup(LONG_LEVELS, short=True)
    ledger.mark({"ETHUSDT": 55.0})

    # Act
    result = scanner.scan({"BTCUSDT": bar("BTCUSDT", 100.0), "ETHUSDT": bar("ETHUSDT", 55.0)})

    # Assert
    assert [p.key for p in result.underwater_without_tp_sl] == [("ETHUSDT", "short")]
    assert {p.key for p in result.open_positions} - {e.key for e in result.tp_sl_entries} == {("ETHUSDT", "short")}
    assert dispatch.orders == []  # nothing to trigger without levels


def test_scan_when_position_has_no_tp_sl_but_is_winning_then_not_underwater():
    scanner, ledger, _, _ = _setup(LONG_LEVELS, short=True)
    ledger.mark({"ETHUSDT": 45.0})

    result = scanner.scan({"BTCUSDT": bar("BTCUSDT", 100.0), "ETHUSDT": bar("ETHUSDT", 45.0)})

    assert result.underwater_without_tp_sl == ()


def test_scan_when_no_bar_for_symbol_then_position_skipped():
    scanner, _, _, dispatch = _setup(LONG_LEVELS)

    result = scanner.scan({"ETHUSDT": bar("ETHUSDT", 1.0)})

    assert result.triggers == () and dispatch.orders == []
    assert len(result.open_positions) == 1


def test_scan_when_close_not_routed_then_trigger_marked_and_not_fired_again():
    # Arrange: the router is not driven
    scanner, _, _, dispatch = _setup(LONG_LEVELS, routes=False)
    hit = {"BTCUSDT": bar("BTCUSDT", 98.0)}

    # Act
    first = scanner.scan(hit)
    second = scanner.scan(hit)

    # Assert
    assert [t.routed for t in first.triggers] == [False]
    assert second.triggers == ()
    assert len(dispatch.orders) == 1
    assert len(second.open_positions) == 1


def test_scan_when_unrouted_position_goes_away_then_a_new_one_can_fire():
    # Arrange
    scanner, ledger, _, dispatch = _setup(LONG_LEVELS, routes=False)
    scanner.scan({"BTCUSDT": bar("BTCUSDT", 98.0)})
    ledger.apply_fill(fill("BTCUSDT", Side.SELL, 2.0, 98.0, reduce_only=True))
    scanner.scan({"BTCUSDT": bar("BTCUSDT", 98.0)})  # nothing open: pending forgotten
    ledger.apply_fill(fill("BTCUSDT", Side.BUY, 1.0, 100.0))

    # Act
    result = scanner.scan({"BTCUSDT": bar("BTCUSDT", 98.0)})

    # Assert
    assert len(result.triggers) == 1 and len(dispatch.orders) == 2


def test_trigger_exit_when_called_directly_then_routes_full_position_quantity():
    scanner, ledger, _, dispatch = _setup(long_qty=3.0)
    position = ledger.get("BTCUSDT", PositionSide.LONG)

    trigger = scanner.trigger_exit(position, STOP_LOSS, 99.0, 98.7)

    assert (trigger.reason, trigger.level, trigger.price, trigger.routed) == (STOP_LOSS, 99.0, 98.7, True)
    assert dispatch.orders[0].quantity == pytest.approx(3.0)


def test_trigger_exit_when_called_twice_then_order_ids_increase():
    scanner, ledger, _, dispatch = _setup(routes=False)
    position = ledger.get("BTCUSDT", PositionSide.LONG)

    scanner.trigger_exit(position, STOP_LOSS, 99.0, 98.7)
    scanner.trigger_exit(position, STOP_LOSS, 99.0, 98.7)

    assert [o.order_id for o in dispatch.orders] == ["X000001", "X000002"]
