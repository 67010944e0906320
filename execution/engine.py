"""The cycle loop of the paper engine: one bar per cycle, no telemetry.

Usage::

    engine = Executor(cfg, clock=SimClock(start), seed=7, scenario=Scenario("healthy"), journal=journal)
    for index, (ts, bars) in enumerate(feed.steps(300)):
        engine.run_cycle(index, ts, bars)

Each cycle: mark prices, scan exits (closing orders go through the router), then per
symbol generate a signal, check risk, and route approved orders. Faults of the
scenario are injected here, at the engine's own seams.
"""
from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Tuple

from execution.config import AppConfig
from execution.exit_scanner import ExitScanner
from execution.journal import Journal, iso
from execution.models import Bar, ExitScanResult, Fill, Order, PositionSide, RouteResult, TpSlEntry
from execution.order_router import OrderRouter
from execution.paper_exchange import PaperExchange
from execution.positions import PositionsLedger, TpSlRegistry, tp_sl_levels
from execution.risk_limits import RiskEngine
from execution.scenarios import Scenario
from execution.signal_generator import SignalGenerator


@dataclass
class RunStats:
    """The engine's own counts (the truth the telemetry is checked against)."""

    bars: int = 0
    signals: int = 0
    approved: int = 0
    vetoes: Counter = field(default_factory=Counter)  # reason -> count
    orders_routed: int = 0      # entries and exits handed to the router
    orders_stuck: int = 0       # orders the router was not driven for (router_stall)
    twap_orders: int = 0        # routed orders split into more than one slice
    retries: int = 0            # transient venue rejects the router retried
    rejected_slices: int = 0    # slices the venue finally refused
    exit_scans: int = 0
    exit_triggers: int = 0
    exit_triggers_by_reason: Counter = field(default_factory=Counter)  # take_profit | stop_loss -> count
    tp_sl_registered: int = 0
    tp_sl_dropped: int = 0      # registrations lost by the tp_sl_gap fault


@dataclass(frozen=True)
class CycleResult:
    """What one cycle did (handed to ``RunHooks.on_cycle``); ``exit_scan`` is None when no scan ran."""

    index: int
    ts: float
    signals: int
    exit_scan: Optional[ExitScanResult]
    vetoes: Tuple[str, ...] = ()   # the reason of each vetoed signal, in symbol order
    orders_routed: int = 0         # entries and exits handed to the router
    orders_stuck: int = 0          # orders the router was not driven for
    bars: Mapping[str, Bar] = field(default_factory=dict)  # the bars the cycle processed, by symbol


class Executor:
    def __init__(self, cfg: AppConfig, clock: Callable[[], float], seed: int, scenario: Scenario, journal: Journal) -> None:
        self.cfg = cfg
        self.clock = clock
        self.scenario = scenario
        self.journal = journal
        self.ledger = PositionsLedger()
        self.registry = TpSlRegistry()
        self.venue = PaperExchange(cfg.exchange, self.ledger, seed=seed, clock=clock)
        self.router = OrderRouter(cfg.router, self.venue, on_fill=self._on_fill, journal=journal, clock=clock)
        self.signals = SignalGenerator(cfg.strategy)
        self.risk = RiskEngine(cfg.risk, cfg.strategy, self.ledger, clock)
        self.exits = ExitScanner(self.ledger, self.registry, dispatch=self.dispatch, clock=clock)
        self.stats = RunStats()
        self._order_ids = itertools.count(1)
        self._registrations = 0
        self._index = 0
        self._last_bars: Dict[str, Bar] = {}
        self._fault_symbol = scenario.fault_symbol(cfg.strategy.symbols)

    # -- seams where faults are injected -------------------------------------------------
    def dispatch(self, order: Order, price: Optional[float]) -> Optional[RouteResult]:
        """Hand ``order`` to the router; None when the router is not being driven."""
        if self.scenario.router_stalled(self._index):
            self.stats.orders_stuck += 1
            return None
        self.stats.orders_routed += 1
        result = self.router.route_order(order, price)
        if len(result.slices) > 1:
            self.stats.twap_orders += 1
        for s in result.slices:
            self.stats.retries += s.attempts - 1  # every attempt after the first follows a transient reject
            self.stats.rejected_slices += int(s.fill is None)
        return result

    def _feed(self, index: int, ts: float, bars: Dict[str, Bar]) -> Dict[str, Bar]:
        if self.scenario.feed_frozen(index) and self._last_bars:
            return {s: Bar(ts, s, b.close, b.close, b.close, b.close, 0.0) for s, b in self._last_bars.items()}
        symbol = self._fault_symbol
        if self.scenario.symbol_frozen(index):
            return {s: b for s, b in bars.items() if s != symbol}
        last = self._last_bars.get(symbol)
        if self.scenario.symbol_price_stale(index) and last is not None and symbol in bars:
            return {**bars, symbol: Bar(ts, symbol, last.close, last.close, last.close, last.close, bars[symbol].volume)}
        return bars

    # -- the cycle -----------------------------------------------------------------------
    def run_cycle(self, index: int, ts: float, bars: Dict[str, Bar]) -> CycleResult:
        """Process one bar for every symbol."""
        self._index = index
        routed_before, stuck_before = self.stats.orders_routed, self.stats.orders_stuck
        vetoes: List[str] = []
        bars = self._feed(index, ts, bars)
        self._last_bars = bars
        self.stats.bars += 1
        closes = {s: b.close for s, b in bars.items()}
        self.venue.set_prices(closes)
        self.ledger.mark(closes)
        scan = None
        if not self.scenario.exit_scan_stalled(index):
            scan = self.exits.scan(bars)
            self.stats.exit_scans += 1
            self.stats.exit_triggers += len(scan.triggers)
            self.stats.exit_triggers_by_reason.update(t.reason for t in scan.triggers)
        signals = 0
        for symbol in self.cfg.strategy.symbols:
            bar = bars.get(symbol)
            if bar is None:
                continue
            signal = self.signals.generate(bar)
            if signal is None:
                continue
            signals += 1
            self.stats.signals += 1
            decision = self.risk.check(signal)
            if not decision.approved:
                self.stats.vetoes[decision.reason] += 1
                vetoes.append(decision.reason)
                continue
            self.stats.approved += 1
            order = Order(order_id=f"E{next(self._order_ids):06d}", symbol=symbol, side=signal.side,
                          quantity=decision.quantity, ts=self.clock())
            result = self.dispatch(order, bar.close)
            if result is not None and result.filled_quantity > 0:
                self._register_tp_sl(symbol, PositionSide.of(signal.side))
        return CycleResult(index, ts, signals, scan, vetoes=tuple(vetoes),
                           orders_routed=self.stats.orders_routed - routed_before,
                           orders_stuck=self.stats.orders_stuck - stuck_before, bars=bars)

    def _on_fill(self, fill: Fill) -> None:
        pos = self.ledger.apply_fill(fill)
        if fill.reduce_only and pos is None:
            closed_side = PositionSide.LONG if fill.side.value == "sell" else PositionSide.SHORT
            self.registry.remove(fill.symbol, closed_side)

    def _register_tp_sl(self, symbol: str, side: PositionSide) -> None:
        pos = self.ledger.get(symbol, side)
        if pos is None:
            return
        self._registrations += 1
        if self.scenario.drops_registration(self._index, self._registrations):
            self.stats.tp_sl_dropped += 1
            return
        tp, sl = tp_sl_levels(pos.entry_price, side, self.cfg.strategy.take_profit_pct, self.cfg.strategy.stop_loss_pct)
        self.registry.register(TpSlEntry(symbol, side, tp, sl, self.clock()))
        self.stats.tp_sl_registered += 1

    # -- state ---------------------------------------------------------------------------
    def positions_state(self) -> dict:
        """The ledger and registry as the engine sees them (positions.json)."""
        return {
            "written_at": iso(self.clock()),
            "positions": [
                {"symbol": p.symbol, "side": p.side.value, "quantity": p.quantity, "entry_price": p.entry_price,
                 "mark_price": p.mark_price, "unrealized_pnl": p.unrealized_pnl, "opened_at": iso(p.opened_at)}
                for p in self.ledger.positions()
            ],
            "tp_sl": [
                {"symbol": e.symbol, "side": e.side.value, "take_profit": e.take_profit, "stop_loss": e.stop_loss,
                 "registered_at": iso(e.registered_at)}
                for e in self.registry.entries()
            ],
            "realized_pnl": self.ledger.realized_pnl,
        }
