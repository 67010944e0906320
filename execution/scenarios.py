"""Fault scenarios, injected into the engine (never into diagnostics) from bar ``fault_at`` on.

- ``healthy``: no fault.
- ``router_stall``: the router stops being driven; signals and risk checks go on, nothing is routed.
- ``signal_starvation``: the feed freezes; prices stop moving, so no signal qualifies.
- ``tp_sl_gap``: the TP/SL registry silently drops every third registration.
- ``exit_stall``: the exit scanner stops running.
"""
from __future__ import annotations

from dataclasses import dataclass

SCENARIOS = ("healthy", "router_stall", "signal_starvation", "tp_sl_gap", "exit_stall")


@dataclass(frozen=True)
class Scenario:
    name: str = "healthy"
    fault_at: int = 100

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

    def drops_registration(self, bar_index: int, registration_number: int) -> bool:
        """Whether the ``registration_number``-th TP/SL registration (1-based) is silently lost."""
        return self._active("tp_sl_gap", bar_index) and registration_number % 3 == 0
