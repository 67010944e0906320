"""Domain values of the engine: small, immutable, and saying what happened and why.

Engines (risk, router, exit scanner) return these; the instrumentation reads them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional, Tuple


class Side(str, Enum):
    """Order side; a position's side is the side of the order that opened it."""

    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> "Side":
        return Side.SELL if self is Side.BUY else Side.BUY


class PositionSide(str, Enum):
    LONG = "long"
    SHORT = "short"

    @staticmethod
    def of(entry_side: Side) -> "PositionSide":
        return PositionSide.LONG if entry_side is Side.BUY else PositionSide.SHORT

    @property
    def entry_side(self) -> Side:
        return Side.BUY if self is PositionSide.LONG else Side.SELL


@dataclass(frozen=True)
class Bar:
    """One OHLCV bar; ``ts`` is its open time in Unix seconds."""

    ts: float
    symbol: str
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True)
class Signal:
    symbol: str
    side: Side
    price: float
    ts: float
    strength: float
    volatility: float


@dataclass(frozen=True)
class RiskDecision:
    """A risk check's answer: approved, or vetoed with a greppable reason code and its figures."""

    signal: Signal
    approved: bool
    quantity: float = 0.0
    notional: float = 0.0
    reason: Optional[str] = None
    detail: str = ""

    @property
    def symbol(self) -> str:
        return self.signal.symbol


@dataclass(frozen=True)
class Order:
    order_id: str
    symbol: str
    side: Side
    quantity: float
    ts: float
    reduce_only: bool = False
    purpose: str = "entry"  # entry | exit


@dataclass(frozen=True)
class ChildOrder:
    """One slice of an order as sent to the venue."""

    order_id: str
    parent_id: str
    symbol: str
    side: Side
    quantity: float
    reduce_only: bool
    slice_index: int
    attempt: int


@dataclass(frozen=True)
class Fill:
    order_id: str
    parent_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    fee: float
    ts: float
    reduce_only: bool


@dataclass(frozen=True)
class ExchangeResult:
    """What the venue answered to one child order: a fill, or a reject with its reason."""

    order: ChildOrder
    fill: Optional[Fill] = None
    reject_reason: Optional[str] = None
    transient: bool = False

    @property
    def filled(self) -> bool:
        return self.fill is not None


@dataclass(frozen=True)
class SliceResult:
    order: Order
    slice_index: int
    quantity: float
    fill: Optional[Fill]
    attempts: int
    reject_reason: Optional[str] = None


@dataclass(frozen=True)
class RouteResult:
    order: Order
    slices: Tuple[SliceResult, ...]
    filled_quantity: float

    @property
    def fills(self) -> Tuple[Fill, ...]:
        return tuple(s.fill for s in self.slices if s.fill is not None)

    @property
    def rejected(self) -> bool:
        return self.filled_quantity <= 0


@dataclass(frozen=True)
class Position:
    symbol: str
    side: PositionSide
    quantity: float
    entry_price: float
    opened_at: float
    mark_price: float

    @property
    def key(self) -> Tuple[str, str]:
        return (self.symbol, self.side.value)

    @property
    def notional(self) -> float:
        return abs(self.quantity * self.mark_price)

    @property
    def unrealized_pnl(self) -> float:
        sign = 1.0 if self.side is PositionSide.LONG else -1.0
        return sign * (self.mark_price - self.entry_price) * self.quantity


@dataclass(frozen=True)
class TpSlEntry:
    symbol: str
    side: PositionSide
    take_profit: float
    stop_loss: float
    registered_at: float

    @property
    def key(self) -> Tuple[str, str]:
        return (self.symbol, self.side.value)


@dataclass(frozen=True)
class ExitTrigger:
    symbol: str
    side: PositionSide
    reason: str  # take_profit | stop_loss
    level: float
    price: float
    ts: float
    routed: bool


@dataclass(frozen=True)
class ExitScanResult:
    """One exit scan: what was open, what was protected, what fired, what is exposed."""

    ts: float
    open_positions: Tuple[Position, ...]
    tp_sl_entries: Tuple[TpSlEntry, ...]
    triggers: Tuple[ExitTrigger, ...] = field(default_factory=tuple)
    underwater_without_tp_sl: Tuple[Position, ...] = field(default_factory=tuple)
