"""execution.risk_limits: sizing, and a named veto reason (with its figures) per failing check."""
from __future__ import annotations

import pytest

from execution import risk_limits as rl
from execution.models import Side, Signal
from execution.positions import PositionsLedger
from execution.risk_limits import RiskEngine, describe
from tests.unit.execution.builders import T0, clock, config, fill, ledger_with


def _signal(symbol: str = "BTCUSDT", side: Side = Side.BUY, price: float = 100.0, volatility: float = 0.001) -> Signal:
    return Signal(symbol=symbol, side=side, price=price, ts=T0, strength=0.001, volatility=volatility)


def _engine(ledger: PositionsLedger = None, now: float = T0, **risk) -> RiskEngine:
    cfg = config(risk=risk)
    return RiskEngine(cfg.risk, cfg.strategy, ledger if ledger is not None else PositionsLedger(), clock(now))


def test_reasons_when_listed_then_at_least_six_distinct_codes():
    assert len(set(rl.VETO_REASONS)) >= 6
    assert all(r == r.lower() and " " not in r for r in rl.VETO_REASONS)


def test_size_when_calm_market_then_risk_over_stop_loss_distance():
    # Arrange: 3 x volatility (0.003) is inside the 0.4% stop
    engine = _engine()

    # Act
    qty, notional = engine.size(_signal(price=200.0, volatility=0.001))

    # Assert: 6 USDT at risk over a 0.4% stop
    assert notional == pytest.approx(6.0 / 0.004)
    assert qty == pytest.approx(notional / 200.0)


def test_size_when_volatile_market_then_stop_widened_and_size_smaller():
    qty, notional = _engine().size(_signal(volatility=0.002))

    assert notional == pytest.approx(6.0 / 0.006)


def test_check_when_all_limits_pass_then_approved_with_size():
    # Act
    decision = _engine().check(_signal())

    # Assert
    assert decision.approved and decision.reason is None
    assert decision.notional == pytest.approx(1500.0)
    assert decision.quantity == pytest.approx(15.0)
    assert decision.symbol == "BTCUSDT"
    assert describe(decision) is None


def test_check_when_position_open_on_same_side_then_already_in_position():
    ledger = ledger_with(fill("BTCUSDT", Side.BUY, 1.0, 100.0))

    decision = _engine(ledger).check(_signal(side=Side.BUY))

    assert not decision.approved
    assert decision.reason == rl.ALREADY_IN_POSITION
    assert decision.detail == "already_in_position: symbol=BTCUSDT side=long"
    assert describe(decision) == rl.ALREADY_IN_POSITION


def test_check_when_position_open_on_other_side_within_caps_then_hedge_approved():
    # Arrange: hedge mode, a small long open; a short signal on the same symbol
    ledger = ledger_with(fill("BTCUSDT", Side.BUY, 1.0, 100.0))

    # Act
    decision = _engine(ledger).check(_signal(side=Side.SELL))

    # Assert
    assert decision.approved


def test_check_when_symbol_exited_recently_then_cooldown_after_exit():
    # Arrange: a position closed 120 s ago; cooldown is 300 s
    exit_ts = T0 - 120
    ledger = ledger_with(fill("BTCUSDT", Side.BUY, 1.0, 100.0, ts=exit_ts - 600),
                         fill("BTCUSDT", Side.SELL, 1.0, 101.0, ts=exit_ts, reduce_only=True))

    # Act
    decision = _engine(ledger).check(_signal())

    # Assert
    assert decision.reason == rl.COOLDOWN_AFTER_EXIT
    assert "waited=120s min=300s" in decision.detail


def test_check_when_cooldown_has_passed_then_approved():
    exit_ts = T0 - 301
    ledger = ledger_with(fill("BTCUSDT", Side.BUY, 1.0, 100.0, ts=exit_ts - 600),
                         fill("BTCUSDT", Side.SELL, 1.0, 101.0, ts=exit_ts, reduce_only=True))

    assert _engine(ledger).check(_signal()).approved


def test_check_when_other_symbol_exited_recently_then_no_cooldown():
    ledger = ledger_with(fill("ETHUSDT", Side.BUY, 1.0, 100.0, ts=T0 - 600),
                         fill("ETHUSDT", Side.SELL, 1.0, 101.0, ts=T0 - 10, reduce_only=True))

    assert _engine(ledger).check(_signal("BTCUSDT")).approved


def test_check_when_todays_realized_loss_reaches_limit_then_daily_loss_limit():
    # Arrange: lose 50 USDT today against a 40 USDT limit
    ledger = ledger_with(fill("ETHUSDT", Side.BUY, 10.0, 100.0, ts=T0 + 60),
                         fill("ETHUSDT", Side.SELL, 10.0, 95.0, ts=T0 + 600, reduce_only=True))

    # Act
    decision = _engine(ledger, now=T0 + 3600, daily_loss_limit_usdt=40.0).check(_signal())

    # Assert
    assert decision.reason == rl.DAILY_LOSS_LIMIT
    assert "realized=-50.00 limit=-40.00" in decision.detail


def test_check_when_the_loss_was_yesterday_then_trading_resumes():
    # the loss is booked on the previous UTC day (T0 is midnight)
    ledger = ledger_with(fill("ETHUSDT", Side.BUY, 10.0, 100.0, ts=T0 - 3600),
                         fill("ETHUSDT", Side.SELL, 10.0, 95.0, ts=T0 - 60, reduce_only=True))

    decision = _engine(ledger, daily_loss_limit_usdt=40.0, cooldown_after_exit_seconds=0).check(_signal())

    assert decision.approved


def test_check_when_max_positions_open_then_max_concurrent_positions():
    ledger = ledger_with(fill("ETHUSDT", Side.BUY, 1.0, 10.0), fill("SOLUSDT", Side.BUY, 1.0, 10.0))

    decision = _engine(ledger, max_concurrent_positions=2).check(_signal())

    assert decision.reason == rl.MAX_CONCURRENT_POSITIONS
    assert decision.detail.endswith("open=2 max=2")


def test_check_when_volatile_signal_sizes_too_small_then_min_notional():
    # 6 USDT over a 0.9% stop is 666.67 USDT < 750
    decision = _engine().check(_signal(volatility=0.003))

    assert decision.reason == rl.MIN_NOTIONAL
    assert "notional=666.67 min=750.00" in decision.detail
    assert decision.notional == pytest.approx(666.6667, rel=1e-4)


def test_check_when_order_notional_above_maximum_then_max_order_notional():
    decision = _engine(max_order_notional_usdt=1000.0).check(_signal())

    assert decision.reason == rl.MAX_ORDER_NOTIONAL


def test_check_when_hedge_would_exceed_symbol_cap_then_per_symbol_cap():
    # Arrange: 1000 USDT long open; a 1500 USDT short would make 2500 > 1800 on the symbol
    ledger = ledger_with(fill("BTCUSDT", Side.BUY, 10.0, 100.0))

    # Act
    decision = _engine(ledger).check(_signal(side=Side.SELL))

    # Assert
    assert decision.reason == rl.PER_SYMBOL_CAP
    assert "notional_after=2500.00 cap=1800.00" in decision.detail


def test_check_when_book_is_full_then_max_gross_exposure():
    ledger = ledger_with(fill("ETHUSDT", Side.BUY, 50.0, 100.0))  # 5000 USDT open

    decision = _engine(ledger).check(_signal())  # +1500 > 6000

    assert decision.reason == rl.MAX_GROSS_EXPOSURE
    assert "gross_after=6500.00 max=6000.00" in decision.detail


def test_check_when_several_checks_fail_then_first_in_order_wins():
    # Arrange: same-side position AND too much gross exposure
    ledger = ledger_with(fill("BTCUSDT", Side.BUY, 60.0, 100.0))

    # Act
    decision = _engine(ledger).check(_signal(side=Side.BUY))

    # Assert
    assert decision.reason == rl.ALREADY_IN_POSITION


def test_check_when_vetoed_then_decision_still_carries_the_size():
    decision = _engine(max_order_notional_usdt=1000.0).check(_signal())

    assert not decision.approved
    assert decision.notional == pytest.approx(1500.0) and decision.quantity == pytest.approx(15.0)


def test_check_when_called_then_never_raises_for_a_denial():
    ledger = ledger_with(*(fill(f"S{i}", Side.BUY, 1.0, 10.0) for i in range(10)))

    decision = _engine(ledger, max_concurrent_positions=1).check(_signal())

    assert decision.approved is False
