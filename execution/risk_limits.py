"""Pre-trade risk checks: each check returns a reason code with its figures, or None.

Usage::

    risk = RiskEngine(cfg.risk, cfg.strategy, ledger, clock)
    decision = risk.check(signal)          # RiskDecision(approved=..., reason="per_symbol_cap", ...)

A denial is a value, never an exception. Reason codes are the constants below.
Positions are in hedge mode (one long and one short per symbol at most):
``already_in_position`` means a position on the signal's own side, while
``per_symbol_cap`` bounds both sides of a symbol together.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

from execution.config import RiskConfig, StrategyConfig
from execution.models import PositionSide, RiskDecision, Signal
from execution.positions import PositionsLedger

ALREADY_IN_POSITION = "already_in_position"
COOLDOWN_AFTER_EXIT = "cooldown_after_exit"
DAILY_LOSS_LIMIT = "daily_loss_limit"
MAX_CONCURRENT_POSITIONS = "max_concurrent_positions"
MIN_NOTIONAL = "min_notional"
MAX_ORDER_NOTIONAL = "max_order_notional"
PER_SYMBOL_CAP = "per_symbol_cap"
MAX_GROSS_EXPOSURE = "max_gross_exposure"

VETO_REASONS = (
    ALREADY_IN_POSITION, COOLDOWN_AFTER_EXIT, DAILY_LOSS_LIMIT, MAX_CONCURRENT_POSITIONS,
    MIN_NOTIONAL, MAX_ORDER_NOTIONAL, PER_SYMBOL_CAP, MAX_GROSS_EXPOSURE,
)


class RiskEngine:
    """Sizes a signal by volatility and runs the checks in a fixed order; first denial wins."""

    def __init__(self, cfg: RiskConfig, strategy: StrategyConfig, ledger: PositionsLedger, clock: Callable[[], float]) -> None:
        self.cfg = cfg
        self.strategy = strategy
        self.ledger = ledger
        self.clock = clock

    def size(self, signal: Signal) -> Tuple[float, float]:
        """(quantity, notional): risk a fixed USDT amount over one stop-loss distance, widened by volatility."""
        stop_distance = max(self.strategy.stop_loss_pct, 3 * signal.volatility)
        notional = self.strategy.risk_per_trade_usdt / stop_distance
        return notional / signal.price, notional

    def check(self, signal: Signal) -> RiskDecision:
        """Approve ``signal`` with a size, or deny it with the first failing check's reason."""
        qty, notional = self.size(signal)
        for check in (self._position, self._cooldown, self._daily_loss, self._concurrency,
                      self._min_notional, self._max_order, self._symbol_cap, self._gross):
            denial = check(signal, notional)
            if denial is not None:
                reason, detail = denial
                return RiskDecision(signal, False, qty, notional, reason, detail)
        return RiskDecision(signal, True, qty, notional)

    def _position(self, s: Signal, notional: float):
        side = PositionSide.of(s.side)
        if self.ledger.get(s.symbol, side) is not None:
            return ALREADY_IN_POSITION, f"{ALREADY_IN_POSITION}: symbol={s.symbol} side={side.value}"
        return None

    def _cooldown(self, s: Signal, notional: float):
        last = self.ledger.last_exit_ts.get(s.symbol)
        if last is None:
            return None
        waited = self.clock() - last
        if waited < self.cfg.cooldown_after_exit_seconds:
            return COOLDOWN_AFTER_EXIT, f"{COOLDOWN_AFTER_EXIT}: waited={waited:.0f}s min={self.cfg.cooldown_after_exit_seconds:.0f}s"
        return None

    def _daily_loss(self, s: Signal, notional: float):
        realized = self.ledger.realized_on_day_of(self.clock())
        if realized <= -self.cfg.daily_loss_limit_usdt:
            return DAILY_LOSS_LIMIT, f"{DAILY_LOSS_LIMIT}: realized={realized:.2f} limit={-self.cfg.daily_loss_limit_usdt:.2f}"
        return None

    def _concurrency(self, s: Signal, notional: float):
        if len(self.ledger) >= self.cfg.max_concurrent_positions:
            return MAX_CONCURRENT_POSITIONS, f"{MAX_CONCURRENT_POSITIONS}: open={len(self.ledger)} max={self.cfg.max_concurrent_positions}"
        return None

    def _min_notional(self, s: Signal, notional: float):
        if notional < self.cfg.min_notional_usdt:
            return MIN_NOTIONAL, f"{MIN_NOTIONAL}: notional={notional:.2f} min={self.cfg.min_notional_usdt:.2f}"
        return None

    def _max_order(self, s: Signal, notional: float):
        if notional > self.cfg.max_order_notional_usdt:
            return MAX_ORDER_NOTIONAL, f"{MAX_ORDER_NOTIONAL}: notional={notional:.2f} max={self.cfg.max_order_notional_usdt:.2f}"
        return None

    def _symbol_cap(self, s: Signal, notional: float):
        after = self.ledger.symbol_notional(s.symbol) + notional
        if after > self.cfg.per_symbol_cap_usdt:
            return PER_SYMBOL_CAP, f"{PER_SYMBOL_CAP}: notional_after={after:.2f} cap={self.cfg.per_symbol_cap_usdt:.2f}"
        return None

    def _gross(self, s: Signal, notional: float):
        after = self.ledger.gross_exposure() + notional
        if after > self.cfg.max_gross_exposure_usdt:
            return MAX_GROSS_EXPOSURE, f"{MAX_GROSS_EXPOSURE}: gross_after={after:.2f} max={self.cfg.max_gross_exposure_usdt:.2f}"
        return None


def describe(decision: RiskDecision) -> Optional[str]:
    """The decision's reason code, or None when approved."""
    return None if decision.approved else decision.reason
