"""Every span, attribute and metric name of otel-diag: the single place they are spelled.

Prometheus sees metric names with ``_`` and unit suffixes, e.g.
``trading.last_event.time`` (unit ``s``) → ``trading_last_event_time_seconds``.
"""
from __future__ import annotations

# -- spans ------------------------------------------------------------------------------
SPAN_EXECUTOR_CYCLE = "executor.cycle"
SPAN_SIGNAL_GENERATE = "signal.generate"
SPAN_RISK_CHECK = "risk.check"
SPAN_ORDER_ROUTE = "order.route"
SPAN_ORDER_TWAP_SLICE = "order.twap_slice"
SPAN_EXCHANGE_PLACE_ORDER = "exchange.place_order"
SPAN_EXIT_SCAN = "exit.scan"
SPAN_EXIT_TRIGGER = "exit.trigger"

# -- attributes -------------------------------------------------------------------------
ATTR_SYMBOL = "trading.symbol"
ATTR_SIDE = "trading.side"
ATTR_QUANTITY = "trading.quantity"
ATTR_VETO_REASON = "trading.veto.reason"
ATTR_ORDER_ID = "trading.order.id"
ATTR_ROUTER_EVENT = "trading.router.event"
ATTR_EXIT_REASON = "trading.exit.reason"
ATTR_EVENT = "trading.event"
ATTR_CYCLE_INDEX = "trading.cycle.index"
ATTR_POSITIONS_OPEN = "trading.positions.open_count"
ATTR_EXIT_TRIGGER_COUNT = "trading.exit.trigger_count"
ATTR_MARKET_DATA_UPDATE = "trading.market_data.update"  # what a symbol's last-update time is of (below)
ATTR_OVERFLOW = "otel.metric.overflow"  # the SDK's own name for a folded-over series

# -- metrics ----------------------------------------------------------------------------
METRIC_SIGNALS = "trading.signals"
METRIC_ORDERS = "trading.orders"
METRIC_VETOES = "trading.risk.vetoes"
METRIC_ROUTER_EVENTS = "trading.router.events"
METRIC_EXIT_SCANS = "trading.exit.scans"
METRIC_EXIT_TRIGGERS = "trading.exit.triggers"
METRIC_LAST_EVENT_TIME = "trading.last_event.time"
METRIC_POSITIONS_OPEN = "trading.positions.open"
METRIC_TP_SL_REGISTERED = "trading.tp_sl.registered"
METRIC_TP_SL_MISSING = "trading.tp_sl.missing"
METRIC_TP_SL_ORPHANED = "trading.tp_sl.orphaned"
METRIC_UNDERWATER_UNPROTECTED = "trading.positions.underwater_unprotected"
METRIC_TP_SL_COVERAGE = "trading.tp_sl.coverage"
METRIC_MARKET_DATA_LAST_UPDATE = "trading.market_data.last_update.time"

# -- units (UCUM; annotations in braces are dropped by Prometheus, "s" becomes _seconds) --
METRIC_UNITS = {
    METRIC_SIGNALS: "{signal}",
    METRIC_ORDERS: "{order}",
    METRIC_VETOES: "{veto}",
    METRIC_ROUTER_EVENTS: "{event}",
    METRIC_EXIT_SCANS: "{scan}",
    METRIC_EXIT_TRIGGERS: "{trigger}",
    METRIC_LAST_EVENT_TIME: "s",
    METRIC_POSITIONS_OPEN: "{position}",
    METRIC_TP_SL_REGISTERED: "{position}",  # open positions that have a TP/SL entry
    METRIC_TP_SL_MISSING: "{position}",
    METRIC_TP_SL_ORPHANED: "{entry}",
    METRIC_UNDERWATER_UNPROTECTED: "{position}",
    METRIC_TP_SL_COVERAGE: "1",
    METRIC_MARKET_DATA_LAST_UPDATE: "s",
}

# -- event kinds (values of trading.event) ---------------------------------------------
EVENT_SIGNAL = "signal"
EVENT_ORDER = "order"
EVENT_VETO = "veto"
EVENT_ROUTER = "router"
EVENT_EXIT_SCAN = "exit_scan"
EVENT_EXIT_TRIGGER = "exit_trigger"
EVENTS = (EVENT_SIGNAL, EVENT_ORDER, EVENT_VETO, EVENT_ROUTER, EVENT_EXIT_SCAN, EVENT_EXIT_TRIGGER)

# -- router events (values of trading.router.event) ------------------------------------
ROUTER_ROUTE = "route"
ROUTER_TWAP_SLICE = "twap_slice"
ROUTER_FILL = "fill"
ROUTER_REJECT = "reject"
ROUTER_EVENTS = (ROUTER_ROUTE, ROUTER_TWAP_SLICE, ROUTER_FILL, ROUTER_REJECT)

# -- liveness keys of runtime_diagnostics → the event kind that stamps them -------------
LIVENESS_EVENTS = {
    "signals": EVENT_SIGNAL,
    "orders": EVENT_ORDER,
    "exits": EVENT_EXIT_TRIGGER,
    "router": EVENT_ROUTER,
    "exit_scans": EVENT_EXIT_SCAN,
}

# -- market data (values of trading.market_data.update) -----------------------------------
MARKET_DATA_BAR = "bar"                    # a bar of the symbol reached the engine's cycle
MARKET_DATA_PRICE_CHANGE = "price_change"  # ... with a close different from the symbol's last one
MARKET_DATA_UPDATES = (MARKET_DATA_BAR, MARKET_DATA_PRICE_CHANGE)

# -- per-symbol checks of runtime_diagnostics.liveness → the update whose age they judge --------
SYMBOL_CHECK_UPDATES = {
    "no_bars": MARKET_DATA_BAR,
    "price_frozen": MARKET_DATA_PRICE_CHANGE,
}

# -- resource (semantic conventions: stable attribute names) -----------------------------
RESOURCE_SERVICE_NAME = "service.name"
RESOURCE_SERVICE_INSTANCE_ID = "service.instance.id"
RESOURCE_DEPLOYMENT_ENVIRONMENT = "deployment.environment.name"  # was deployment.environment before semconv 1.27
DEFAULT_SERVICE_NAME = "executor"

# -- instrumentation scope ------------------------------------------------------------------
INSTRUMENTATION_NAME = "otel_diag"
# The semantic-conventions version the names above follow; the tracer and the meter carry it.
SCHEMA_URL = "https://opentelemetry.io/schemas/1.37.0"
