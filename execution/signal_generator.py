"""Per-symbol trend signals: EMA cross with a volatility filter.

Usage::

    gen = SignalGenerator(cfg.strategy)
    signal = gen.generate(bar)   # a Signal on a cross in a moving market, else None
"""
from __future__ import annotations

import math
from collections import deque
from typing import Deque, Dict, Optional

from execution.config import StrategyConfig
from execution.models import Bar, Side, Signal


class _SymbolState:
    __slots__ = ("fast", "slow", "returns", "last_close", "bars", "last_diff")

    def __init__(self, window: int) -> None:
        self.fast: Optional[float] = None
        self.slow: Optional[float] = None
        self.returns: Deque[float] = deque(maxlen=window)
        self.last_close: Optional[float] = None
        self.bars = 0
        self.last_diff: Optional[float] = None


class SignalGenerator:
    """Emits a Signal when the fast EMA crosses the slow one on a bar whose close moved,
    and recent volatility (stdev of log returns) is at least ``min_volatility``."""

    def __init__(self, cfg: StrategyConfig) -> None:
        self.cfg = cfg
        self._alpha_fast = 2.0 / (cfg.fast_ema_bars + 1)
        self._alpha_slow = 2.0 / (cfg.slow_ema_bars + 1)
        self._state: Dict[str, _SymbolState] = {}

    def generate(self, bar: Bar) -> Optional[Signal]:
        """Update the symbol's indicators with ``bar``; return a Signal on a qualifying cross."""
        st = self._state.get(bar.symbol)
        if st is None:
            st = self._state[bar.symbol] = _SymbolState(self.cfg.volatility_window_bars)
        close = bar.close
        prev_close = st.last_close
        if prev_close is not None and prev_close > 0:
            st.returns.append(math.log(close / prev_close))
        st.last_close = close
        st.fast = close if st.fast is None else st.fast + self._alpha_fast * (close - st.fast)
        st.slow = close if st.slow is None else st.slow + self._alpha_slow * (close - st.slow)
        st.bars += 1
        diff = st.fast - st.slow
        prev, st.last_diff = st.last_diff, diff
        if st.bars <= self.cfg.slow_ema_bars or prev is None or len(st.returns) < 2:
            return None
        crossed_up = prev <= 0 < diff
        crossed_down = prev >= 0 > diff
        if not (crossed_up or crossed_down):
            return None
        if close == prev_close:  # a cross from EMA lag alone, on a bar that did not move: no new information
            return None
        vol = _stdev(st.returns)
        if vol < self.cfg.min_volatility:
            return None
        side = Side.BUY if crossed_up else Side.SELL
        if side is Side.SELL and not self.cfg.allow_short:
            return None
        return Signal(symbol=bar.symbol, side=side, price=close, ts=bar.ts, strength=abs(diff) / close, volatility=vol)


def _stdev(values) -> float:
    n = len(values)
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
