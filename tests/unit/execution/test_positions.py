"""execution.positions: the ledger (hedge mode, PnL by UTC day) and the TP/SL registry."""
from __future__ import annotations

import pytest

from execution.models import PositionSide, Side, TpSlEntry
from execution.positions import PositionsLedger, TpSlRegistry, keys, tp_sl_levels
from tests.unit.execution.builders import T0, fill, ledger_with


# -- ledger ---------------------------------------------------------------------------------
def test_apply_fill_when_entry_buy_then_long_position_opened():
    # Arrange
    ledger = PositionsLedger()

    # Act
    pos = ledger.apply_fill(fill("BTCUSDT", Side.BUY, 2.0, 100.0, ts=T0, fee=0.5))

    # Assert
    assert (pos.symbol, pos.side, pos.quantity, pos.entry_price, pos.opened_at) == ("BTCUSDT", PositionSide.LONG, 2.0, 100.0, T0)
    assert ledger.get("BTCUSDT", PositionSide.LONG) == pos
    assert len(ledger) == 1
    assert ledger.realized_pnl == pytest.approx(-0.5)  # the entry fee is a realized cost
    assert ledger.fees_paid == pytest.approx(0.5)


def test_apply_fill_when_entry_sell_then_short_position_opened():
    pos = PositionsLedger().apply_fill(fill("BTCUSDT", Side.SELL, 1.0, 100.0))

    assert pos.side is PositionSide.SHORT


def test_apply_fill_when_adding_to_position_then_average_entry_price():
    ledger = ledger_with(fill("BTCUSDT", Side.BUY, 1.0, 100.0))

    pos = ledger.apply_fill(fill("BTCUSDT", Side.BUY, 3.0, 120.0))

    assert pos.quantity == 4.0
    assert pos.entry_price == pytest.approx(115.0)


def test_apply_fill_when_long_and_short_on_same_symbol_then_both_kept_hedge_mode():
    ledger = ledger_with(fill("BTCUSDT", Side.BUY, 1.0, 100.0), fill("BTCUSDT", Side.SELL, 2.0, 100.0))

    assert [p.key for p in ledger.positions()] == [("BTCUSDT", "long"), ("BTCUSDT", "short")]
    assert ledger.symbol_notional("BTCUSDT") == pytest.approx(300.0)


def test_apply_fill_when_reduce_only_partial_then_realizes_pnl_on_the_closed_part():
    # Arrange
    ledger = ledger_with(fill("BTCUSDT", Side.BUY, 4.0, 100.0))

    # Act
    pos = ledger.apply_fill(fill("BTCUSDT", Side.SELL, 1.0, 110.0, reduce_only=True, fee=0.1))

    # Assert
    assert pos.quantity == 3.0 and pos.entry_price == 100.0
    assert ledger.realized_pnl == pytest.approx(10.0 - 0.1)
    assert "BTCUSDT" not in ledger.last_exit_ts


def test_apply_fill_when_reduce_only_closes_short_then_removed_with_exit_time_and_pnl():
    # Arrange
    ledger = ledger_with(fill("ETHUSDT", Side.SELL, 2.0, 100.0))

    # Act
    pos = ledger.apply_fill(fill("ETHUSDT", Side.BUY, 2.0, 90.0, reduce_only=True, ts=T0 + 600))

    # Assert
    assert pos is None and len(ledger) == 0
    assert ledger.realized_pnl == pytest.approx(20.0)  # short gains when price falls
    assert ledger.last_exit_ts["ETHUSDT"] == T0 + 600


def test_apply_fill_when_reduce_only_larger_than_position_then_closes_only_what_is_held():
    ledger = ledger_with(fill("BTCUSDT", Side.BUY, 1.0, 100.0))

    pos = ledger.apply_fill(fill("BTCUSDT", Side.SELL, 5.0, 90.0, reduce_only=True))

    assert pos is None
    assert ledger.realized_pnl == pytest.approx(-10.0)


def test_apply_fill_when_reduce_only_without_position_then_nothing_opened():
    ledger = PositionsLedger()

    assert ledger.apply_fill(fill("BTCUSDT", Side.SELL, 1.0, 100.0, reduce_only=True)) is None
    assert len(ledger) == 0


def test_apply_fill_when_slices_leave_float_dust_then_position_closed():
    # Arrange: a 3-slice close of a quantity whose slices leave 7e-12 behind (the router's slicing arithmetic)
    qty = 169639.3136505093
    ledger = ledger_with(fill("DOGEUSDT", Side.BUY, qty, 0.12))
    base = qty / 3
    slices = [base, base, qty - 2 * base]

    # Act
    for q in slices:
        last = ledger.apply_fill(fill("DOGEUSDT", Side.SELL, q, 0.12, reduce_only=True))

    # Assert
    assert last is None and len(ledger) == 0


def test_realized_on_day_of_when_pnl_on_two_days_then_split_by_utc_day():
    ledger = ledger_with(
        fill("BTCUSDT", Side.BUY, 1.0, 100.0, ts=T0 - 120),
        fill("BTCUSDT", Side.SELL, 1.0, 90.0, ts=T0 - 60, reduce_only=True),   # -10 yesterday
        fill("BTCUSDT", Side.BUY, 1.0, 100.0, ts=T0 + 60),
        fill("BTCUSDT", Side.SELL, 1.0, 105.0, ts=T0 + 120, reduce_only=True),  # +5 today
    )

    assert ledger.realized_on_day_of(T0 - 1) == pytest.approx(-10.0)
    assert ledger.realized_on_day_of(T0 + 3600) == pytest.approx(5.0)
    assert ledger.realized_pnl == pytest.approx(-5.0)


def test_mark_when_prices_move_then_unrealized_pnl_and_exposure_follow():
    # Arrange
    ledger = ledger_with(fill("BTCUSDT", Side.BUY, 2.0, 100.0), fill("ETHUSDT", Side.SELL, 1.0, 50.0))

    # Act
    ledger.mark({"BTCUSDT": 110.0, "ETHUSDT": 60.0, "SOLUSDT": 1.0})

    # Assert
    assert ledger.get("BTCUSDT", PositionSide.LONG).unrealized_pnl == pytest.approx(20.0)
    assert ledger.get("ETHUSDT", PositionSide.SHORT).unrealized_pnl == pytest.approx(-10.0)
    assert ledger.unrealized_pnl() == pytest.approx(10.0)
    assert ledger.gross_exposure() == pytest.approx(220.0 + 60.0)


def test_positions_when_several_then_sorted_by_key():
    ledger = ledger_with(fill("SOLUSDT", Side.BUY, 1.0, 1.0), fill("ADAUSDT", Side.SELL, 1.0, 1.0),
                         fill("ADAUSDT", Side.BUY, 1.0, 1.0))

    assert [p.key for p in ledger.positions()] == [("ADAUSDT", "long"), ("ADAUSDT", "short"), ("SOLUSDT", "long")]


# -- registry -------------------------------------------------------------------------------
def _entry(symbol="BTCUSDT", side=PositionSide.LONG, tp=110.0, sl=95.0) -> TpSlEntry:
    return TpSlEntry(symbol, side, tp, sl, T0)


def test_register_when_same_symbol_and_side_then_replaced():
    registry = TpSlRegistry()
    registry.register(_entry(tp=110.0))

    registry.register(_entry(tp=120.0))

    assert len(registry) == 1
    assert registry.get("BTCUSDT", PositionSide.LONG).take_profit == 120.0


def test_register_when_both_sides_of_a_symbol_then_keyed_by_position_side():
    registry = TpSlRegistry()

    registry.register(_entry(side=PositionSide.SHORT))
    registry.register(_entry(side=PositionSide.LONG))

    assert [e.key for e in registry.entries()] == [("BTCUSDT", "long"), ("BTCUSDT", "short")]
    assert keys(registry.entries()) == {("BTCUSDT", "long"), ("BTCUSDT", "short")}


def test_remove_when_present_then_returned_and_gone_else_none():
    registry = TpSlRegistry()
    registry.register(_entry())

    assert registry.remove("BTCUSDT", PositionSide.LONG) == _entry()
    assert registry.remove("BTCUSDT", PositionSide.LONG) is None
    assert registry.get("BTCUSDT", PositionSide.LONG) is None and len(registry) == 0


def test_tp_sl_levels_when_long_then_take_profit_above_and_stop_below():
    tp, sl = tp_sl_levels(100.0, PositionSide.LONG, 0.006, 0.004)

    assert (tp, sl) == (pytest.approx(100.6), pytest.approx(99.6))


def test_tp_sl_levels_when_short_then_take_profit_below_and_stop_above():
    tp, sl = tp_sl_levels(100.0, PositionSide.SHORT, 0.006, 0.004)

    assert (tp, sl) == (pytest.approx(99.4), pytest.approx(100.4))
