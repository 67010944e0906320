"""Fault scenarios, injected into the engine (never into diagnostics) from bar ``fault_at`` on.

- ``healthy``: no fault.
- ``router_stall``: the router stops being driven; signals and risk checks go on, nothing is routed.
- ``signal_starvation``: the feed freezes; prices stop moving, so no signal qualifies.
- ``tp_sl_gap``: the TP/SL registry silently drops every third registration.
- ``exit_stall``: the exit scanner stops running.
- ``symbol_freeze``: one symbol's bars stop arriving (its feed went silent); the others go on.
- ``symbol_stale_price``: one symbol's bars keep arriving, every one at that symbol's last close.

The one symbol of the per-symbol faults is ``symbol``, by default the second configured one
(:meth:`Scenario.fault_symbol`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from execution.diagnostics_document import describe

PER_SYMBOL = ("symbol_freeze", "symbol_stale_price")  # the faults that hit one symbol (``Scenario.fault_symbol``)
SCENARIOS = ("healthy", "router_stall", "signal_starvation", "tp_sl_gap", "exit_stall", *PER_SYMBOL)


@dataclass(frozen=True)
class Scenario:
    name: str = "healthy"
    fault_at: int = 100
    symbol: Optional[str] = None  # the symbol of a per-symbol fault; None: the second configured one

    def __post_init__(self) -> None:
        if self.name not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.name!r} (expected one of: {', '.join(SCENARIOS)})")

    def _active(self, name: str, bar_index: int) -> bool:
        return self.name == name and bar_index >= self.fault_at

    def router_stalled(self, bar_index: int) -> bool:
        return self._active("router_stall", bar_index)

    def feed_frozen(self, bar_index: int) -> bool:
        return self._active("signal_starvation", bar_index)

    def exit_scan_stalled(self, bar_index: int) -> bool:
        return self._active("exit_stall", bar_index)

    @property
    def per_symbol(self) -> bool:
        """Whether the fault hits one symbol (then ``fault_symbol`` names it)."""
        return self.name in PER_SYMBOL

    def fault_symbol(self, symbols: Sequence[str]) -> str:
        """The symbol a per-symbol fault hits among the configured ``symbols``: ``symbol``, else the second one
        (the first when there is one); ValueError when ``symbol`` is not configured."""
        if self.symbol is None:
            return symbols[min(1, len(symbols) - 1)]
        if self.symbol not in symbols:
            raise ValueError(f"expected a symbol of strategy.symbols, got {describe(self.symbol)}")
        return self.symbol

    def symbol_frozen(self, bar_index: int) -> bool:
        return self._active("symbol_freeze", bar_index)

    def symbol_price_stale(self, bar_index: int) -> bool:
        return self._active("symbol_stale_price", bar_index)

    def drops_registration(self, bar_index: int, registration_number: int) -> bool:
        """Whether the ``registration_number``-th TP/SL registration (1-based) is silently lost."""
        return self._active("tp_sl_gap", bar_index) and registration_number % 3 == 0
