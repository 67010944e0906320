"""otel_diag's table of targets for backtrader: its own classes, plus the example strategy's two decisions.

Usage::

    import otel_diag
    otel_diag.configure(clock=clock, targets="examples.backtrader.targets:TARGETS")
    # or: OTEL_DIAG_TARGETS=examples.backtrader.targets:TARGETS python -m your_backtrader_bot

What is which event (docs/instrument_your_own_engine.md walks through it):

- signal: the strategy's ``entry_signal(data)`` when it returns a side (a user's strategy has its own
  decision function; backtrader has no notion of a signal that every strategy shares);
- veto: the strategy's ``risk_check(data, side)`` when it returns a reason;
- order: backtrader's ``Strategy.buy`` / ``Strategy.sell`` (a bracket is three orders: entry, stop, limit);
- router: ``BackBroker.submit`` (route), an order's ``execute`` (fill), ``reject`` and ``margin`` (reject);
- exit scan: ``BackBroker.next``, the broker's per-bar pass over the pending stop and limit orders,
  with the coverage adapter read right after it (open positions vs open stop orders);
- exit trigger: ``BackBroker._execute`` of a bracket child (its stop or its limit) on a real bar;
- market data: the strategy's ``next``, called once a bar with every data feed advanced: each feed's close
  stamps its symbol's last bar and last price change (the per-symbol freshness checks).

The adapters are plain functions of backtrader's objects; the only private names read are
``BackBroker._execute`` (where a child executes) and a data feed's ``_name`` (its symbol).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import backtrader as bt

from examples.backtrader.run import open_positions, stop_keys, underwater_positions
from otel_diag.targets import Call, target

STRATEGY = "examples.backtrader.strategy:BracketStrategy"
EXIT_REASONS = {bt.Order.Stop: "stop_loss", bt.Order.Limit: "take_profit"}


def data_symbol(call: Call) -> Optional[str]:
    """The symbol of the data feed passed first (``entry_signal(data)``, ``risk_check(data, side)``)."""
    data = call.arg(0, "data")
    return getattr(data, "_name", None) or None


def has_result(call: Call) -> bool:
    """The call returned something: ``entry_signal`` a side, ``Strategy.buy``/``sell`` an order (None for a
    zero size)."""
    return call.result is not None


def result(call: Call) -> Any:
    return call.result


def result_symbol(call: Call) -> Optional[str]:
    return call.result.data._name if call.result is not None else None


def order_symbol(call: Call) -> Optional[str]:
    """The symbol of the order passed first (``submit(order)``, ``_execute(order, …)``)."""
    return call.arg(0, "order").data._name


def own_symbol(call: Call) -> Optional[str]:
    """The symbol of the order the method was called on (``order.execute(…)``)."""
    return call.instance.data._name


def is_child_execution(call: Call) -> bool:
    """``_execute`` of a bracket child on a real bar (the broker also calls it with ``ago=None`` to price a
    submission: a pseudo-execution, not an exit)."""
    order = call.arg(0, "order")
    return order.parent is not None and call.arg(1, "ago") is not None and call.arg(2, "price") is not None


def exit_reason(call: Call) -> str:
    return EXIT_REASONS.get(call.arg(0, "order").exectype, "exit")


def closes(call: Call) -> Dict[str, float]:
    """Each data feed's symbol and close at the bar ``next`` was called for."""
    return {data._name: data.close[0] for data in call.instance.datas}


def coverage(call: Call) -> Tuple[List[tuple], List[tuple], List[tuple]]:
    """Open positions, live stop orders, and positions losing money: the broker after its pass."""
    broker = call.instance
    return open_positions(broker), stop_keys(broker), underwater_positions(broker)


TARGETS = (
    target(f"{STRATEGY}.next", "market_data", span="strategy.next", prices=closes),
    target(f"{STRATEGY}.entry_signal", "signal", span="strategy.entry_signal", symbol=data_symbol, when=has_result),
    target(f"{STRATEGY}.risk_check", "veto", span="strategy.risk_check", symbol=data_symbol, reason=result),
    target("backtrader.strategy:Strategy.buy", "order", span="strategy.buy", symbol=result_symbol, when=has_result),
    target("backtrader.strategy:Strategy.sell", "order", span="strategy.sell", symbol=result_symbol, when=has_result),
    target("backtrader.brokers.bbroker:BackBroker.submit", "router", span="broker.submit", router_event="route",
           symbol=order_symbol),
    target("backtrader.order:Order.execute", "router", span="order.execute", router_event="fill",
           symbol=own_symbol),
    target("backtrader.order:OrderBase.reject", "router", span="order.reject", router_event="reject",
           symbol=own_symbol),
    target("backtrader.order:OrderBase.margin", "router", span="order.margin", router_event="reject",
           symbol=own_symbol),
    target("backtrader.brokers.bbroker:BackBroker.next", "exit_scan", span="broker.next", coverage=coverage),
    target("backtrader.brokers.bbroker:BackBroker._execute", "exit_trigger", span="broker.execute",
           when=is_child_execution, reason=exit_reason, symbol=order_symbol),
)
