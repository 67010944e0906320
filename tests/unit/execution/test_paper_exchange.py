"""execution.paper_exchange: fills at the bar price with fees and slippage; rejects are values."""
from __future__ import annotations

import math

import pytest

from execution import paper_exchange as px
from execution.config import ExchangeConfig
from execution.models import Side
from execution.paper_exchange import PaperExchange
from execution.positions import PositionsLedger
from tests.unit.execution.builders import T0, child, clock, fill, ledger_with


def _venue(ledger: PositionsLedger = None, seed: int = 7, **exchange) -> PaperExchange:
    cfg = ExchangeConfig(**{"transient_reject_probability": 0.0, **exchange})
    venue = PaperExchange(cfg, ledger if ledger is not None else PositionsLedger(), seed=seed, clock=clock(T0 + 60))
    venue.set_prices({"BTCUSDT": 100.0})
    return venue


@pytest.mark.parametrize("quantity", [0.0, -1.0, math.nan])
def test_place_order_when_quantity_not_positive_then_zero_quantity_reject(quantity):
    # Act
    result = _venue().place_order(child(quantity=quantity))

    # Assert
    assert not result.filled and result.fill is None
    assert result.reject_reason == px.ZERO_QUANTITY
    assert result.transient is False


def test_place_order_when_symbol_has_no_price_then_unknown_symbol_reject():
    result = _venue().place_order(child(symbol="FOOUSDT"))

    assert result.reject_reason == px.UNKNOWN_SYMBOL and not result.transient


def test_place_order_when_reduce_only_without_position_then_reject():
    result = _venue().place_order(child(side=Side.SELL, reduce_only=True))

    assert result.reject_reason == px.REDUCE_ONLY_NO_POSITION


def test_place_order_when_reduce_only_against_open_long_then_filled():
    ledger = ledger_with(fill("BTCUSDT", Side.BUY, 2.0, 100.0))

    result = _venue(ledger).place_order(child(side=Side.SELL, quantity=2.0, reduce_only=True))

    assert result.filled and result.fill.reduce_only


def test_place_order_when_reduce_only_buy_without_short_then_reject():
    # a long is open, but a reduce-only buy would reduce a short, which does not exist
    ledger = ledger_with(fill("BTCUSDT", Side.BUY, 2.0, 100.0))

    result = _venue(ledger).place_order(child(side=Side.BUY, reduce_only=True))

    assert result.reject_reason == px.REDUCE_ONLY_NO_POSITION


def test_place_order_when_buy_then_fills_above_price_by_slippage_with_fee():
    # Arrange: 10 bps slippage, 0.1% fee
    venue = _venue(slippage_bps=10.0, fee_rate=0.001)

    # Act
    result = venue.place_order(child(side=Side.BUY, quantity=2.0))

    # Assert
    f = result.fill
    assert f.price == pytest.approx(100.1)
    assert f.fee == pytest.approx(100.1 * 2.0 * 0.001)
    assert (f.quantity, f.side, f.symbol, f.ts) == (2.0, Side.BUY, "BTCUSDT", T0 + 60)
    assert (f.order_id, f.parent_id) == ("E000001-0", "E000001")


def test_place_order_when_sell_then_fills_below_price_by_slippage():
    result = _venue(slippage_bps=10.0).place_order(child(side=Side.SELL))

    assert result.fill.price == pytest.approx(99.9)


def test_place_order_when_prices_updated_then_fills_at_new_price():
    venue = _venue(slippage_bps=0.0)
    venue.set_prices({"BTCUSDT": 123.0})

    assert venue.place_order(child()).fill.price == 123.0


def test_set_prices_when_caller_mutates_its_dict_then_venue_unaffected():
    venue = _venue(slippage_bps=0.0)
    prices = {"BTCUSDT": 50.0}
    venue.set_prices(prices)

    prices["BTCUSDT"] = 1.0

    assert venue.place_order(child()).fill.price == 50.0


def test_place_order_when_reject_probability_one_then_transient_reject():
    result = _venue(transient_reject_probability=1.0).place_order(child())

    assert result.reject_reason == px.TRANSIENT_UNAVAILABLE
    assert result.transient is True and not result.filled


def test_place_order_when_bad_order_and_reject_probability_one_then_bad_order_reason_wins():
    # validation comes first: a zero-quantity order is never "transiently" rejected
    result = _venue(transient_reject_probability=1.0).place_order(child(quantity=0.0))

    assert result.reject_reason == px.ZERO_QUANTITY and not result.transient


def test_place_order_when_occasional_rejects_then_same_seed_same_pattern():
    def pattern(seed):
        venue = _venue(seed=seed, transient_reject_probability=0.3)
        return [venue.place_order(child()).transient for _ in range(200)]

    first, again, other = pattern(7), pattern(7), pattern(8)

    assert first == again
    assert first != other
    assert 20 < sum(first) < 100  # occasional, not always
