"""The default patch table: the paper engine otel_diag ships with (``execution``), and what is read from it.

It is a table like any user's (:mod:`otel_diag.targets`), written at the lowest level: each row is
(module, qualified function name, EventSpec) with hand-written recorders, because the shipped
engine's hot path has ratio budgets: an approved ``risk.check`` declared as a user's row
(``target(…, "risk_check", symbol=…, reason=…)``) measures 1.36× prometheus_client's cost, over its
budget of 1.0×, where this table's recorder measures 0.91× (docs/benchmarks.md). The recorders read the
engine's own results — a ``RiskDecision`` carries its signal and says why it vetoed, an
``ExitScanResult`` what is open and protected — so the engine needs no telemetry calls of its own.

Signals are counted where every signal passes, the risk check, not at ``signal.generate``: the
generator runs for every symbol on every bar and mostly returns nothing, so with tracing off
it is not patched at all (8 of the 12.6 wrapped calls a cycle at 8 symbols; docs/benchmarks.md).
Likewise a TWAP slice and its fill or reject are counted at ``order.route``, from the
``RouteResult`` that lists every slice, so ``order.twap_slice`` (1.5 calls a cycle) is not
patched with tracing off either. With tracing on both are spans (children of ``executor.cycle``
and ``order.route``).

Per-symbol market data is stamped at ``executor.cycle``, the one call a cycle that receives every
symbol's bar: one small loop over the configured symbols a cycle, from the ``CycleResult``'s
bars (those the engine processed), not one wrapped call per symbol.
"""
from __future__ import annotations

from typing import Any, Tuple

from otel_diag import semconv as sc
from otel_diag.state import ExitGauges, coverage_gauges
from otel_diag.targets import Target
from otel_diag.wrappers import _MISSING, Binding, EventSpec


def _arg(args: tuple, kwargs: dict, index: int, name: str) -> Any:
    return args[index] if len(args) > index else kwargs.get(name)


# -- executor.cycle: the one call that sees every symbol's bar, so per-symbol market data is stamped here ------
def _record_cycle(b: Binding, instance: Any, args: tuple, kwargs: dict, result: Any, trace_id: int) -> None:
    # The bars the cycle processed (a raised cycle: those it was given), of the configured symbols only: the
    # universe bounds the series.
    bars = _arg(args, kwargs, 2, "bars") if result is _MISSING else result.bars
    b.state.stamp_prices({s: bars[s].close for s in instance.cfg.strategy.symbols if s in bars})


def _annotate_cycle(span: Any, instance: Any, args: tuple, kwargs: dict, result: Any) -> None:
    span.set_attribute(sc.ATTR_CYCLE_INDEX, _arg(args, kwargs, 0, "index"))


# -- signal.generate (span only) ------------------------------------------------------
def _annotate_signal(span: Any, instance: Any, args: tuple, kwargs: dict, result: Any) -> None:
    bar = _arg(args, kwargs, 0, "bar")
    if result is not None and result is not _MISSING:
        span.set_attributes({sc.ATTR_SYMBOL: bar.symbol, sc.ATTR_SIDE: result.side.value})
    else:
        span.set_attribute(sc.ATTR_SYMBOL, bar.symbol)


# -- risk.check: every signal reaches the risk engine, so the signal and its veto are counted here -------
def _record_risk(b: Binding, instance: Any, args: tuple, kwargs: dict, result: Any, trace_id: int) -> None:
    if result is _MISSING:  # the check raised: the signal still arrived
        signal = _arg(args, kwargs, 0, "signal")
        b.state.hit(b.signals[signal.symbol], sc.EVENT_SIGNAL, trace_id)
        return
    # result.signal.symbol is what the RiskDecision.symbol property returns, without the property call.
    symbol = result.signal.symbol
    if result.approved:
        b.state.hit(b.signals[symbol], sc.EVENT_SIGNAL, trace_id)
    else:
        b.state.hit2(b.signals[symbol], sc.EVENT_SIGNAL, b.vetoes[result.reason, symbol], sc.EVENT_VETO, trace_id)


def _annotate_risk(span: Any, instance: Any, args: tuple, kwargs: dict, result: Any) -> None:
    signal = _arg(args, kwargs, 0, "signal")
    attributes = {sc.ATTR_SYMBOL: signal.symbol, sc.ATTR_SIDE: signal.side.value}
    if result is not _MISSING:
        if result.approved:
            attributes[sc.ATTR_QUANTITY] = result.quantity
        else:
            attributes[sc.ATTR_VETO_REASON] = result.reason
    span.set_attributes(attributes)  # one call: the SDK takes its span lock once per call


# -- order.route: the order, its route event, and each slice's outcome, read from the RouteResult ---------
def _record_route(b: Binding, instance: Any, args: tuple, kwargs: dict, result: Any, trace_id: int) -> None:
    order = _arg(args, kwargs, 0, "order")
    state, router = b.state, b.router
    state.hit2(b.orders[order.symbol], sc.EVENT_ORDER, router[sc.ROUTER_ROUTE], sc.EVENT_ROUTER, trace_id)
    if result is not _MISSING:  # a route that raised counts its order; its slices are in no result
        for child in result.slices:
            outcome = sc.ROUTER_FILL if child.fill is not None else sc.ROUTER_REJECT
            state.hit2(router[sc.ROUTER_TWAP_SLICE], sc.EVENT_ROUTER, router[outcome], sc.EVENT_ROUTER, trace_id)


def _annotate_order(span: Any, instance: Any, args: tuple, kwargs: dict, result: Any) -> None:
    order = _arg(args, kwargs, 0, "order")
    span.set_attributes({sc.ATTR_SYMBOL: order.symbol, sc.ATTR_SIDE: order.side.value,
                         sc.ATTR_QUANTITY: order.quantity, sc.ATTR_ORDER_ID: order.order_id,
                         sc.ATTR_ROUTER_EVENT: sc.ROUTER_ROUTE})


# -- order.twap_slice (span only: its slice and fill or reject are counted at order.route) ------------
def _annotate_slice(span: Any, instance: Any, args: tuple, kwargs: dict, result: Any) -> None:
    order = _arg(args, kwargs, 0, "order")
    attributes = {sc.ATTR_SYMBOL: order.symbol, sc.ATTR_SIDE: order.side.value,
                  sc.ATTR_QUANTITY: _arg(args, kwargs, 2, "quantity"), sc.ATTR_ORDER_ID: order.order_id}
    if result is not _MISSING:
        attributes[sc.ATTR_ROUTER_EVENT] = sc.ROUTER_FILL if result.fill is not None else sc.ROUTER_REJECT
    span.set_attributes(attributes)


# -- exchange.place_order --------------------------------------------------------------
def _annotate_exchange(span: Any, instance: Any, args: tuple, kwargs: dict, result: Any) -> None:
    child = _arg(args, kwargs, 0, "order")
    span.set_attributes({sc.ATTR_SYMBOL: child.symbol, sc.ATTR_SIDE: child.side.value,
                         sc.ATTR_QUANTITY: child.quantity, sc.ATTR_ORDER_ID: child.order_id})


# -- exit.scan -------------------------------------------------------------------------
def exit_gauges(result: Any) -> ExitGauges:
    """The exit pipeline of one ``ExitScanResult``, keyed by (symbol, side) so hedge mode counts right."""
    return coverage_gauges([(p.symbol, p.side.value) for p in result.open_positions],
                           [(e.symbol, e.side.value) for e in result.tp_sl_entries],
                           [(p.symbol, p.side.value) for p in result.underwater_without_tp_sl])


def _record_scan(b: Binding, instance: Any, args: tuple, kwargs: dict, result: Any, trace_id: int) -> None:
    state = b.state
    state.hit(b.exit_scans[()], sc.EVENT_EXIT_SCAN, trace_id)
    if result is not _MISSING:
        state.set_exit_source(exit_gauges, result)  # computed at collection: once a minute, not every scan


def _annotate_scan(span: Any, instance: Any, args: tuple, kwargs: dict, result: Any) -> None:
    if result is not _MISSING:
        span.set_attributes({sc.ATTR_POSITIONS_OPEN: len(result.open_positions),
                             sc.ATTR_EXIT_TRIGGER_COUNT: len(result.triggers)})


# -- exit.trigger ----------------------------------------------------------------------
def _record_trigger(b: Binding, instance: Any, args: tuple, kwargs: dict, result: Any, trace_id: int) -> None:
    reason = _arg(args, kwargs, 1, "reason")
    b.state.hit(b.exit_triggers[reason], sc.EVENT_EXIT_TRIGGER, trace_id)


def _annotate_trigger(span: Any, instance: Any, args: tuple, kwargs: dict, result: Any) -> None:
    position = _arg(args, kwargs, 0, "position")
    span.set_attributes({sc.ATTR_SYMBOL: position.symbol, sc.ATTR_SIDE: position.side.value,
                         sc.ATTR_QUANTITY: position.quantity, sc.ATTR_EXIT_REASON: _arg(args, kwargs, 1, "reason")})


TARGETS: Tuple[Target, ...] = (
    Target("execution.engine", "Executor.run_cycle", EventSpec(sc.SPAN_EXECUTOR_CYCLE, _record_cycle, _annotate_cycle)),
    Target("execution.signal_generator", "SignalGenerator.generate", EventSpec(sc.SPAN_SIGNAL_GENERATE, None, _annotate_signal)),
    Target("execution.risk_limits", "RiskEngine.check", EventSpec(sc.SPAN_RISK_CHECK, _record_risk, _annotate_risk)),
    Target("execution.order_router", "OrderRouter.route_order", EventSpec(sc.SPAN_ORDER_ROUTE, _record_route, _annotate_order)),
    Target("execution.order_router", "OrderRouter.route_twap_slice", EventSpec(sc.SPAN_ORDER_TWAP_SLICE, None, _annotate_slice)),
    Target("execution.paper_exchange", "PaperExchange.place_order", EventSpec(sc.SPAN_EXCHANGE_PLACE_ORDER, None, _annotate_exchange)),
    Target("execution.exit_scanner", "ExitScanner.scan", EventSpec(sc.SPAN_EXIT_SCAN, _record_scan, _annotate_scan)),
    Target("execution.exit_scanner", "ExitScanner.trigger_exit", EventSpec(sc.SPAN_EXIT_TRIGGER, _record_trigger, _annotate_trigger)),
)
