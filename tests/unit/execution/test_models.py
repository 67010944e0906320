"""execution.models: small immutable values that say what happened."""
from __future__ import annotations

import dataclasses

import pytest

from execution.models import (ExchangeResult, ExitScanResult, Position, PositionSide, RiskDecision, RouteResult, Side,
                              Signal, SliceResult, TpSlEntry)
from tests.unit.execution.builders import T0, child, fill, order


def test_side_when_opposite_then_flips():
    assert Side.BUY.opposite is Side.SELL and Side.SELL.opposite is Side.BUY


def test_position_side_when_of_entry_side_then_long_for_buy_short_for_sell():
    assert PositionSide.of(Side.BUY) is PositionSide.LONG
    assert PositionSide.of(Side.SELL) is PositionSide.SHORT
    assert PositionSide.SHORT.entry_side is Side.SELL and PositionSide.LONG.entry_side is Side.BUY


def test_sides_when_serialized_then_plain_strings():
    assert (Side.BUY.value, PositionSide.SHORT.value) == ("buy", "short")
    assert Side("sell") is Side.SELL


@pytest.mark.parametrize("side, mark, pnl", [(PositionSide.LONG, 110.0, 20.0), (PositionSide.SHORT, 110.0, -20.0),
                                             (PositionSide.SHORT, 90.0, 20.0)])
def test_position_when_marked_then_unrealized_pnl_signed_by_side(side, mark, pnl):
    position = Position("BTCUSDT", side, 2.0, 100.0, T0, mark)

    assert position.unrealized_pnl == pytest.approx(pnl)
    assert position.notional == pytest.approx(2.0 * mark)
    assert position.key == ("BTCUSDT", side.value)


def test_tp_sl_entry_when_keyed_then_same_key_as_its_position():
    entry = TpSlEntry("BTCUSDT", PositionSide.LONG, 101.0, 99.0, T0)

    assert entry.key == Position("BTCUSDT", PositionSide.LONG, 1.0, 100.0, T0, 100.0).key


def test_route_result_when_mixed_slices_then_fills_and_rejected_follow():
    o = order()
    f = fill("BTCUSDT", Side.BUY, 1.0, 100.0)
    result = RouteResult(o, (SliceResult(o, 0, 1.0, f, 1), SliceResult(o, 1, 1.0, None, 3, "transient_unavailable")), 1.0)

    assert result.fills == (f,)
    assert not result.rejected
    assert RouteResult(o, (SliceResult(o, 0, 1.0, None, 1, "zero_quantity"),), 0.0).rejected


def test_exchange_result_when_fill_present_then_filled():
    assert ExchangeResult(child(), fill=fill("BTCUSDT", Side.BUY, 1.0, 100.0)).filled
    assert not ExchangeResult(child(), reject_reason="zero_quantity").filled


def test_risk_decision_when_made_then_symbol_from_signal():
    signal = Signal("ETHUSDT", Side.SELL, 3000.0, T0, 0.001, 0.001)

    assert RiskDecision(signal, False, reason="min_notional").symbol == "ETHUSDT"


def test_exit_scan_result_when_built_without_triggers_then_empty_tuples():
    result = ExitScanResult(ts=T0, open_positions=(), tp_sl_entries=())

    assert result.triggers == () and result.underwater_without_tp_sl == ()


def test_values_when_assigned_then_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        order().quantity = 2.0  # type: ignore[misc]
