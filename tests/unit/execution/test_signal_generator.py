"""execution.signal_generator: EMA cross with a volatility filter, per symbol."""
from __future__ import annotations

from typing import List, Optional, Sequence

from execution.config import StrategyConfig
from execution.models import Side, Signal
from execution.signal_generator import SignalGenerator
from tests.unit.execution.builders import T0, bars_from_closes

DOWNTREND = [100.0, 99.5, 99.0, 98.5, 98.0, 97.5, 97.0]  # fast EMA below slow
UPTREND = [100.0, 100.5, 101.0, 101.5, 102.0, 102.5, 103.0]  # fast EMA above slow


def _signals(closes: Sequence[float], symbol: str = "BTCUSDT", **strategy) -> List[Optional[Signal]]:
    gen = SignalGenerator(StrategyConfig(**strategy))
    return [gen.generate(b) for b in bars_from_closes(closes, symbol)]


def test_generate_when_fast_ema_crosses_above_slow_then_buy_signal():
    # Arrange
    closes = DOWNTREND + [99.0]

    # Act
    out = _signals(closes)

    # Assert
    assert out[:-1] == [None] * len(DOWNTREND)
    signal = out[-1]
    assert signal is not None and signal.side is Side.BUY
    assert (signal.symbol, signal.price, signal.ts) == ("BTCUSDT", 99.0, T0 + 60 * len(DOWNTREND))
    assert signal.volatility > 0 and signal.strength > 0


def test_generate_when_fast_ema_crosses_below_slow_then_sell_signal():
    out = _signals(UPTREND + [101.0])

    assert out[-1] is not None and out[-1].side is Side.SELL


def test_generate_when_no_cross_then_none():
    out = _signals(DOWNTREND + [96.5, 96.0])

    assert out == [None] * (len(DOWNTREND) + 2)


def test_generate_when_cross_during_warmup_then_none():
    # a cross on bar 4, before slow_ema_bars (5) bars have been seen
    out = _signals([100.0, 99.0, 98.0, 101.0])

    assert out == [None] * 4


def test_generate_when_volatility_below_minimum_then_none():
    out = _signals(DOWNTREND + [99.0], min_volatility=0.05)

    assert out[-1] is None


def test_generate_when_short_not_allowed_then_no_sell_signal():
    out = _signals(UPTREND + [101.0], allow_short=False)

    assert out[-1] is None


def test_generate_when_ema_lag_crosses_on_a_bar_that_did_not_move_then_none():
    # Arrange: after the down trend one up bar to 98, then flat bars; the EMAs keep converging and
    # cross on the third flat bar through lag alone (a frozen feed must not produce signals)
    closes = DOWNTREND + [98.0, 98.0, 98.0, 98.0, 98.0, 98.0]

    # Act
    out = _signals(closes)

    # Assert
    assert out == [None] * len(closes)


def test_generate_when_symbols_interleave_then_each_keeps_its_own_indicators():
    # Arrange
    gen = SignalGenerator(StrategyConfig())
    btc = bars_from_closes(DOWNTREND + [99.0], "BTCUSDT")
    eth = bars_from_closes(UPTREND + [101.0], "ETHUSDT")

    # Act
    out = [(gen.generate(b), gen.generate(e)) for b, e in zip(btc, eth)]

    # Assert
    last_btc, last_eth = out[-1]
    assert last_btc.side is Side.BUY and last_btc.symbol == "BTCUSDT"
    assert last_eth.side is Side.SELL and last_eth.symbol == "ETHUSDT"
    assert all(b is None and e is None for b, e in out[:-1])


def test_generate_when_same_bars_twice_then_same_signals():
    closes = DOWNTREND + [99.0, 97.0, 99.5, 96.0]

    assert _signals(closes) == _signals(closes)


def test_generate_when_the_lag_cross_bar_moves_a_little_then_buy_signal():
    # the same path as above, but the crossing bar ticks up: now it carries new information
    closes = DOWNTREND + [98.0, 98.0, 98.0, 98.01]

    out = _signals(closes)

    assert out[-1] is not None and out[-1].side is Side.BUY
    assert out[:-1] == [None] * (len(closes) - 1)
