"""The ``diagnostics.json`` document, defined once: keys, types, writer, tolerant reader, health verdict.

Usage::

    from execution import diagnostics_document as dd

    data = dd.to_json(dd.DiagnosticsDocument(written_at=..., evaluated_at=..., service=dd.ServiceInfo(),
                                             veto_counters=..., exit_pipeline=..., liveness=...))
    reading = dd.from_json(json.loads(text))   # never raises: the sections, cleaned, and every problem
    dd.health(block).code                      # 0 healthy, 1 alerting, 2 unknown/stopped/failed — status and panel alike
    dd.json_schema()                           # docs/runtime_diagnostics.schema.json (``make schema``)

Each field of the dataclasses below carries its kind (how it is checked, what its JSON Schema
says) and whether spec §4.1 requires it; the writer, the reader, the schema and the defaults
all follow from that. Adding a field to the document is one field here plus one line in
docs/state_files.md. Standard library only, so the engine, the loader, the panel and the tools
may all import it.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from execution.clock import iso

SCHEMA_VERSION = 1
DIAGNOSTICS_FILE = "diagnostics.json"
POSITIONS_FILE = "positions.json"
JOURNAL_FILE = "journal.jsonl"
STATE_FILES = (DIAGNOSTICS_FILE, POSITIONS_FILE, JOURNAL_FILE)
LOCK_FILE = "executor.lock"  # held (flock) by the one executor writing this state dir; not a state file
DEFAULT_PUBLISH_INTERVAL_SECONDS = 60.0
STALE_AFTER_INTERVALS = 3
# The longest publish interval a config or a file may state: a reader's max age (3 intervals) is never
# unbounded, so a file that claims "publish every 1e300 s" can never stay fresh for ever.
MAX_PUBLISH_INTERVAL_SECONDS = 3600.0
# How far in the future a written_at may be and still count as fresh (clock skew between writer and reader).
FUTURE_SKEW_SECONDS = 30.0
# The longest max age a reader may be asked for (``otel-diag status --max-age``): a day, never unbounded.
MAX_AGE_LIMIT_SECONDS = 86_400.0
MAX_PROBLEMS = 50
# What the reader keeps of a file, so the largest file it accepts still gives a small block, quickly.
# Beyond a cap the value is cut, not refused (docs/state_files.md, "Reader caps").
MAX_TEXT_CHARS = 256           # a text value, a map key, a list entry: longer ends in "…" at this length
MAX_LIST_ITEMS = 256           # a list of symbols (the *_count fields carry the totals)
MAX_MAP_ENTRIES = 2_048        # a map of counts, above the writer's default 2,000 series + "_other"; reason × symbol in all
MAX_LIVENESS_MAP_ENTRIES = 32  # a map keyed by liveness check (five today)
MAX_STALE_SYMBOLS_SHOWN = 8    # a verdict's alert line names at most this many stale symbols, then "and N more"

# How far a file can be trusted (the loader's ``status``); only STATUS_OK is fresh and well-formed.
STATUS_OK = "ok"
STATUS_MISSING = "missing"
STATUS_UNREADABLE = "unreadable"
STATUS_EMPTY = "empty"
STATUS_CORRUPT = "corrupt"
STATUS_INVALID = "invalid"
STATUS_UNSUPPORTED_SCHEMA = "unsupported_schema"
STATUS_STALE = "stale"
STATUSES = (STATUS_OK, STATUS_MISSING, STATUS_UNREADABLE, STATUS_EMPTY, STATUS_CORRUPT,
            STATUS_INVALID, STATUS_UNSUPPORTED_SCHEMA, STATUS_STALE)

# service.state: what the executor said of itself in its last write.
SERVICE_RUNNING = "running"
SERVICE_STOPPED = "stopped"
SERVICE_FAILED = "failed"
SERVICE_STATES = (SERVICE_RUNNING, SERVICE_STOPPED, SERVICE_FAILED)

# The health verdict, and the exit code of ``otel-diag status`` that carries it (2 for every verdict but two).
VERDICT_HEALTHY = "healthy"
VERDICT_ALERTING = "alerting"
VERDICT_UNKNOWN = "unknown"
VERDICT_STOPPED = SERVICE_STOPPED
VERDICT_FAILED = SERVICE_FAILED
EXIT_HEALTHY = 0
EXIT_ALERTING = 1
EXIT_UNKNOWN = 2


# -- liveness checks ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LivenessCheck:
    key: str              # the key in runtime_diagnostics.liveness maps; idle flag ``idle_<key>``
    threshold_field: str  # the threshold's field in the config's ``diagnostics.liveness``
    label: str            # how people see it
    spec: bool            # one of spec §1.2's four keys (written first); False for our extras

    @property
    def idle_flag(self) -> str:
        return f"idle_{self.key}"


# In display order. The file writes the spec's keys first, then the extras (``LIVENESS_FILE_ORDER``).
LIVENESS_CHECKS: Tuple[LivenessCheck, ...] = (
    LivenessCheck("signals", "max_idle_signals_seconds", "Signals", True),
    LivenessCheck("orders", "max_idle_orders_seconds", "Orders", True),
    LivenessCheck("exits", "max_idle_exits_seconds", "Exits (TP/SL triggers)", True),
    LivenessCheck("exit_scans", "max_idle_exit_scans_seconds", "Exit scans", False),
    LivenessCheck("router", "max_idle_router_events_seconds", "Router", True),
)
LIVENESS_KEYS = tuple(c.key for c in LIVENESS_CHECKS)
LIVENESS_FILE_ORDER = tuple(c.key for c in LIVENESS_CHECKS if c.spec) + tuple(
    c.key for c in LIVENESS_CHECKS if not c.spec)



# -- per-symbol market-data checks ---------------------------------------------------------------
@dataclass(frozen=True)
class SymbolCheck:
    key: str              # the failed check a stale symbol is reported with (symbol_checks, symbol_details keys)
    threshold_field: str  # the threshold's field in the config's ``diagnostics.liveness``
    label: str            # how people see it
    since: str            # what its age is counted from


# In precedence order: a symbol that gets no bars is reported as no_bars, whatever its price did.
SYMBOL_CHECKS: Tuple[SymbolCheck, ...] = (
    SymbolCheck("no_bars", "max_symbol_data_age_seconds", "no bars", "the symbol's last bar"),
    SymbolCheck("price_frozen", "max_symbol_price_frozen_seconds", "price frozen", "the symbol's last price change"),
)
SYMBOL_CHECK_KEYS = tuple(c.key for c in SYMBOL_CHECKS)
MARKET_DATA_STALE = "market data stale"  # how a verdict, the panel and an alert's summary call a stale symbol
NOT_CHECKED = "not checked"              # ... and market data no threshold, no symbol or liveness disabled checks


# -- time ----------------------------------------------------------------------------------------
def to_iso(ts: Optional[float]) -> Optional[str]:
    """Unix seconds as ISO-8601 UTC; None for None and for values off the calendar (NaN, inf, year 10000)."""
    if ts is None:
        return None
    try:
        return iso(ts)
    except (ValueError, OverflowError, OSError):
        return None


def parse_timestamp(value: Any) -> Optional[datetime]:
    """An aware UTC datetime from an ISO string (naive = UTC, ``Z`` or offset), a datetime or Unix number.

    Anything else — garbage, NaN, infinities, out-of-range numbers, strings over 64 characters,
    other types — gives None.
    """
    try:
        if value is None or isinstance(value, bool):
            return None
        if isinstance(value, datetime):
            dt = value
        elif isinstance(value, (int, float)):
            return datetime.fromtimestamp(value, timezone.utc) if math.isfinite(value) else None
        elif isinstance(value, str):
            text = value.strip()
            if not text or len(text) > 64:
                return None
            try:
                number = float(text)
            except ValueError:
                dt = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "Zz" else text)
            else:
                return parse_timestamp(number) if text[:1].isdigit() or text[:1] in "+-." else None
        else:
            return None
        dt = dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)
        dt.timestamp()  # reject values that cannot be placed on the Unix line
        return dt
    except (ValueError, OverflowError, OSError, TypeError):
        return None


def parse_iso(value: Any) -> Optional[datetime]:
    """The file's time format only: an ISO-8601 string (not a number, not a number in a string)."""
    if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS:
        return None
    try:
        float(value)
        return None
    except ValueError:
        return parse_timestamp(value)


def is_positive_number(value: Any) -> bool:
    """A finite int or float above 0 (not a bool, not an int beyond float range)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value) and value > 0
    except OverflowError:
        return False


def format_age(seconds: Any) -> str:
    """Seconds as a short human duration: ``42s``, ``4m 10s``, ``12m``, ``2h 05m``, ``3d 04h``."""
    if not is_positive_number(seconds):
        return "0s"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 600:
        return f"{s // 60}m {s % 60:02d}s" if s % 60 else f"{s // 60}m"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86_400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m" if s % 3600 // 60 else f"{s // 3600}h"
    return f"{s // 86_400}d {s % 86_400 // 3600:02d}h" if s % 86_400 // 3600 else f"{s // 86_400}d"


# -- kinds: how a value is checked, and what the schema says -----------------------------------
class Bad(ValueError):
    """A value of the wrong type or range; the message says what was expected."""


@dataclass(frozen=True)
class Kind:
    check: Callable[[Any], Any]   # the clean value, or raises Bad(expected)
    expected: str                 # what Bad says when a required value is absent
    schema: Dict[str, Any]        # its JSON Schema


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Bad("a number")
    try:
        result = float(value)
    except OverflowError:
        raise Bad("a finite number") from None
    if not math.isfinite(result):
        raise Bad("a finite number")
    return result


def _count(value: Any) -> int:
    try:
        number = _number(value)
    except Bad:
        raise Bad("an integer >= 0") from None
    if number < 0 or number != int(number):
        raise Bad("an integer >= 0")
    return int(number)


def _at_least_zero(value: Any) -> float:
    number = _number(value)
    if number < 0:
        raise Bad("seconds >= 0")
    return number


def _positive(value: Any) -> float:
    number = _number(value)
    if number <= 0:
        raise Bad("a number > 0")
    return number


def _fraction(value: Any) -> float:
    number = _number(value)
    if not 0.0 <= number <= 1.0:
        raise Bad("a ratio between 0 and 1")
    return number


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Bad("true or false")
    return value


def clip(text: str) -> str:
    """``text`` cut to MAX_TEXT_CHARS characters, the last one "…" when cut."""
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS - 1] + "…"


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise Bad("a string")
    return clip(value)


def _opt_text(value: Any) -> Optional[str]:
    return None if value is None else _text(value)


def _opt_int(value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and -2 ** 64 < value < 2 ** 64:
        return value  # exact: a 64-bit seed reads back as written, not rounded through a float
    number = _number(value)
    if number != int(number):
        raise Bad("an integer or null")
    return int(number)


def _timestamp(value: Any) -> Optional[str]:
    if value is None:
        return None
    if parse_iso(value) is None:
        raise Bad("an ISO-8601 time or null")
    return value


_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def _trace_id(value: Any) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or not _TRACE_ID.match(value):
        raise Bad("a 32-hex-digit trace id or null")
    return value


def _symbols(value: Any) -> List[str]:
    kept = value[:MAX_LIST_ITEMS] if isinstance(value, list) else None
    if kept is None or not all(isinstance(v, str) for v in kept):
        raise Bad("a list of strings")
    return [clip(v) for v in kept]


def _symbol_check(value: Any) -> str:
    if value not in SYMBOL_CHECK_KEYS:
        raise Bad(" or ".join(SYMBOL_CHECK_KEYS))
    return value


def _interval(value: Any) -> float:
    number = _positive(value)
    if number > MAX_PUBLISH_INTERVAL_SECONDS:
        raise Bad(f"a number > 0 and at most {MAX_PUBLISH_INTERVAL_SECONDS:g}")
    return number


def _kind(check: Callable[[Any], Any], schema: Dict[str, Any]) -> Kind:
    try:
        check(object())
    except Bad as bad:
        return Kind(check, str(bad), schema)
    raise AssertionError("every kind rejects object()")  # pragma: no cover


COUNT = _kind(_count, {"type": "integer", "minimum": 0})
SECONDS = _kind(_at_least_zero, {"type": "number", "minimum": 0})
POSITIVE = _kind(_positive, {"type": "number", "exclusiveMinimum": 0})
INTERVAL = _kind(_interval, {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_PUBLISH_INTERVAL_SECONDS})
FRACTION = _kind(_fraction, {"type": "number", "minimum": 0, "maximum": 1})
BOOL = _kind(_bool, {"type": "boolean"})
TEXT = _kind(_text, {"type": "string"})
OPT_TEXT = _kind(_opt_text, {"type": ["string", "null"]})
OPT_INT = _kind(_opt_int, {"type": ["integer", "null"]})
TIMESTAMP = _kind(_timestamp, {"type": ["string", "null"], "format": "date-time"})
TRACE_ID = _kind(_trace_id, {"type": ["string", "null"], "pattern": _TRACE_ID.pattern})
SYMBOLS = _kind(_symbols, {"type": "array", "items": {"type": "string"}})
SYMBOL_CHECK = _kind(_symbol_check, {"type": "string", "enum": list(SYMBOL_CHECK_KEYS)})


@dataclass(frozen=True)
class Map:
    """An object of ``values`` (``depth`` 2: an object of such objects), written in ``order``."""

    values: Kind
    depth: int = 1
    order: str = "sorted"  # "sorted" keys, or "liveness": LIVENESS_FILE_ORDER, then the rest as they come

    @property
    def limit(self) -> int:
        """How many entries the reader keeps (at depth 2: outer and inner entries together)."""
        return MAX_LIVENESS_MAP_ENTRIES if self.order == "liveness" else MAX_MAP_ENTRIES

    @property
    def schema(self) -> Dict[str, Any]:
        inner: Dict[str, Any] = {"type": "object", "additionalProperties": dict(self.values.schema)}
        if self.order == "liveness":
            inner["properties"] = {key: dict(self.values.schema) for key in LIVENESS_FILE_ORDER}
        return inner if self.depth == 1 else {"type": "object", "additionalProperties": inner}


def item(kind: Any, default: Any, doc: str = "", *, required: bool = False, enum: Optional[list] = None,
         schema: Optional[Dict[str, Any]] = None) -> Any:
    """A document field: its kind (a Kind or a Map), default, description, whether spec §4.1 requires it,
    and what its schema adds to the kind's (``enum``, ``schema``)."""
    meta = {"kind": kind, "doc": doc, "required": required, "enum": enum, "schema": schema or {}}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


# -- the document ---------------------------------------------------------------------------------
# Fields are declared in the order the file writes them.
@dataclass
class ServiceInfo:
    name: str = item(TEXT, "executor", "service.name resource attribute", required=True)
    instance_id: Optional[str] = item(OPT_TEXT, None, "service.instance.id")
    environment: Optional[str] = item(OPT_TEXT, None, "deployment.environment.name")
    scenario: Optional[str] = item(OPT_TEXT, None, "healthy, router_stall, signal_starvation, tp_sl_gap, exit_stall, "
                                   "symbol_freeze, symbol_stale_price")
    fault_symbol: Optional[str] = item(OPT_TEXT, None, "the symbol symbol_freeze / symbol_stale_price hit; null for "
                                       "the other scenarios")
    pace: Optional[str] = item(OPT_TEXT, None, enum=["replay", "realtime", None])
    seed: Optional[int] = item(OPT_INT, None)
    pid: Optional[int] = item(OPT_INT, None, schema={"minimum": 0})
    publish_interval_seconds: float = item(INTERVAL, DEFAULT_PUBLISH_INTERVAL_SECONDS, required=True)
    state: Optional[str] = item(OPT_TEXT, None, "running while the loop runs; stopped in the final write of a run "
                                "that ended; failed when the run stopped on an error (see failure)",
                                enum=[*SERVICE_STATES, None])
    stopped_at: Optional[str] = item(TIMESTAMP, None, "wall time the run stopped or failed; null while running")
    failure: Optional[str] = item(OPT_TEXT, None, "why the run failed, one line; null unless state is failed")
    jaeger_ui_url: Optional[str] = item(OPT_TEXT, None, "Jaeger UI address; the risk panel links traces when set")


@dataclass
class VetoCounters:
    by_reason: Dict[str, int] = item(Map(COUNT), {}, "vetoes by reason code", required=True)
    total_signals: int = item(COUNT, 0, "signals generated", required=True)
    total_orders: int = item(COUNT, 0, "orders routed", required=True)
    total_vetoes: int = item(COUNT, 0, "risk vetoes", required=True)
    last_signal_ts: Optional[str] = item(TIMESTAMP, None, "last signal", required=True)
    last_order_ts: Optional[str] = item(TIMESTAMP, None, "last order routed", required=True)
    last_veto_ts: Optional[str] = item(TIMESTAMP, None, "last veto", required=True)
    by_symbol: Dict[str, int] = item(Map(COUNT), {}, "extra: vetoes by symbol")
    by_reason_symbol: Dict[str, Dict[str, int]] = item(Map(COUNT, depth=2), {}, "extra: vetoes by reason, then symbol")
    router_events: Dict[str, int] = item(Map(COUNT), {}, "extra: router events by kind (route, twap_slice, fill, reject)")
    overflow: bool = item(BOOL, False, "extra: true when a cardinality cap folded series into _other")


@dataclass
class ExitPipelineStatus:
    last_exit_scan_ts: Optional[str] = item(TIMESTAMP, None, "last exit scan", required=True)
    last_exit_trigger_ts: Optional[str] = item(TIMESTAMP, None, "last exit (TP/SL) trigger", required=True)
    last_router_event_ts: Optional[str] = item(TIMESTAMP, None, "last router event: route, TWAP slice, fill or reject",
                                               required=True)
    open_positions_count: int = item(COUNT, 0, "open positions in the ledger", required=True)
    tp_sl_registered_count: int = item(COUNT, 0, "open positions with a TP/SL entry", required=True)
    tp_sl_missing_count: int = item(COUNT, 0, "open positions without a TP/SL entry", required=True)
    underwater_without_tp_sl_count: int = item(COUNT, 0, "open positions under water with no TP/SL", required=True)
    tp_sl_coverage_pct: float = item(FRACTION, 0.0, "registered / open, 0..1; 0.0 when nothing is open", required=True)
    ledger_registry_mismatch: bool = item(BOOL, False, "tp_sl_missing_count > 0", required=True)
    tp_sl_orphan_count: int = item(COUNT, 0, "extra: registry entries with no open position")
    underwater_without_tp_sl_symbols: List[str] = item(SYMBOLS, [], "extra")
    missing_tp_sl_symbols: List[str] = item(SYMBOLS, [], "extra")
    total_exit_scans: int = item(COUNT, 0, "extra")
    total_exit_triggers: int = item(COUNT, 0, "extra")


@dataclass
class LivenessAlerts:
    idle_signals: bool = item(BOOL, False, required=True)
    idle_orders: bool = item(BOOL, False, required=True)
    idle_exits: bool = item(BOOL, False, required=True)
    idle_router: bool = item(BOOL, False, required=True)
    details: Dict[str, float] = item(Map(SECONDS, order="liveness"), {}, "seconds since each key's last event "
                                     "(>= threshold when missing); absent when not checked", required=True)
    missing: Dict[str, bool] = item(Map(BOOL, order="liveness"), {}, "true when the key's event was never seen",
                                    required=True)
    enabled: bool = item(BOOL, True, "extra: false → every flag false, details and missing empty")
    idle_exit_scans: bool = item(BOOL, False, "extra")
    thresholds: Dict[str, float] = item(Map(POSITIVE, order="liveness"), {}, "extra: idle thresholds in seconds")
    last_event_ts: Dict[str, Optional[str]] = item(Map(TIMESTAMP, order="liveness"), {},
                                                   "extra: each key's last event time (null when never seen)")
    last_trace_ids: Dict[str, Optional[str]] = item(Map(TRACE_ID, order="liveness"), {},
                                                    "extra: trace id of each key's last event")
    evaluated_at: Optional[str] = item(TIMESTAMP, None, "extra: clock time of the evaluation")
    stale_symbols: List[str] = item(SYMBOLS, [], "extra: symbols whose market data is stale (a per-symbol check "
                                    "failed, or a configured symbol never had a bar), sorted")
    symbol_checks: Dict[str, str] = item(Map(SYMBOL_CHECK), {}, "extra: the failed check of each stale symbol: "
                                         "no_bars (takes precedence) or price_frozen")
    symbol_details: Dict[str, Dict[str, float]] = item(
        Map(SECONDS, depth=2), {}, "extra: per symbol, seconds since its last bar (no_bars) and its last price "
        "change (price_frozen); >= threshold when never seen; a check without a threshold is absent")
    symbol_thresholds: Dict[str, float] = item(Map(POSITIVE), {}, "extra: per-symbol check thresholds in seconds "
                                               "(no_bars: max_symbol_data_age_seconds, price_frozen: "
                                               "max_symbol_price_frozen_seconds)")
    missing_symbols: List[str] = item(SYMBOLS, [], "extra: configured symbols that never had a bar, sorted")

    @property
    def any_idle(self) -> bool:
        return any(getattr(self, check.idle_flag) for check in LIVENESS_CHECKS)


# The sections of runtime_diagnostics, in file order.
SECTIONS: Tuple[Tuple[str, type], ...] = (
    ("veto_counters", VetoCounters), ("exit_pipeline", ExitPipelineStatus), ("liveness", LivenessAlerts))


@dataclass
class DiagnosticsDocument:
    written_at: Optional[str]
    evaluated_at: Optional[str]
    service: ServiceInfo
    veto_counters: VetoCounters
    exit_pipeline: ExitPipelineStatus
    liveness: LivenessAlerts
    schema_version: int = SCHEMA_VERSION


# -- the writer -----------------------------------------------------------------------------------
def _ordered(value: Mapping[str, Any], kind: Map) -> Dict[str, Any]:
    if kind.order == "liveness":
        keys = [k for k in LIVENESS_FILE_ORDER if k in value] + [k for k in value if k not in LIVENESS_FILE_ORDER]
    else:
        keys = sorted(value)
    if kind.depth == 2:
        return {k: _ordered(value[k], Map(kind.values, 1, kind.order)) for k in keys}
    return {k: value[k] for k in keys}


@functools.lru_cache(maxsize=None)
def _layout(cls: type) -> Tuple[Tuple[str, Optional[Map]], ...]:
    """(field name, its Map or None) in file order: read once per section type, not on every publish."""
    return tuple((f.name, f.metadata["kind"] if isinstance(f.metadata["kind"], Map) else None)
                 for f in dataclasses.fields(cls))


def section_to_json(section: Any) -> Dict[str, Any]:
    """One section (a dataclass above) as the file writes it: fields in order, maps ordered, lists copied."""
    out: Dict[str, Any] = {}
    for name, map_kind in _layout(type(section)):
        value = getattr(section, name)
        if map_kind is not None:
            value = _ordered(value, map_kind)
        elif isinstance(value, list):
            value = list(value)
        out[name] = value
    return out


def to_json(doc: DiagnosticsDocument) -> Dict[str, Any]:
    """The whole document as the JSON object diagnostics.json holds."""
    return {
        "schema_version": doc.schema_version,
        "written_at": doc.written_at,
        "evaluated_at": doc.evaluated_at,
        "service": section_to_json(doc.service),
        "runtime_diagnostics": {name: section_to_json(getattr(doc, name)) for name, _ in SECTIONS},
    }


def service_info(values: Mapping[str, Any]) -> ServiceInfo:
    """A ServiceInfo from a mapping; keys the document does not know are left out."""
    known = {f.name for f in dataclasses.fields(ServiceInfo)}
    return ServiceInfo(**{k: v for k, v in values.items() if k in known})


# -- the tolerant reader -----------------------------------------------------------------------------
SHORT_CHARS = 40  # a value quoted in a one-line message: longer ends in "..." at this length


def shorten(text: str) -> str:
    """``text`` cut to SHORT_CHARS characters, the last three "..." when cut: for quoting in a message."""
    return text if len(text) <= SHORT_CHARS else text[:SHORT_CHARS - 3] + "..."


def describe(value: Any) -> str:
    """A value from a file, short and safe to print in a problem message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    return shorten(repr(value[:SHORT_CHARS + 1] if isinstance(value, str) else value))


class Problems(list):
    """What a reader replaced, as ``"where: expected …, got …"`` lines (at most MAX_PROBLEMS)."""

    def add(self, where: str, expected: str, value: Any = None, *, missing: bool = False) -> None:
        if len(self) >= MAX_PROBLEMS:
            return
        self.append(f"{where}: missing, expected {expected}" if missing
                    else f"{where}: expected {expected}, got {describe(value)}")


def default_section(cls: type) -> Dict[str, Any]:
    """A section with every default, as the file would hold it."""
    return section_to_json(cls())


def _read_map(raw: Any, kind: Map, where: str, problems: Problems, room: Optional[List[int]] = None) -> Dict[str, Any]:
    """The good entries of ``raw``, up to ``kind.limit`` entries read (``room``: what is left, shared by depth 2)."""
    if not isinstance(raw, dict):
        problems.add(where, "an object", raw)
        return {}
    room = [kind.limit] if room is None else room
    clean: Dict[str, Any] = {}
    for key, value in raw.items():
        if room[0] <= 0:
            break
        room[0] -= 1
        key = clip(key)
        if key in clean:  # two long keys cut to the same text: the first is kept
            continue
        inner = f"{where}.{shorten(key)}"
        if kind.depth == 2:
            clean[key] = _read_map(value, Map(kind.values, 1, kind.order), inner, problems, room)
            continue
        try:
            clean[key] = kind.values.check(value)
        except Bad as bad:
            problems.add(inner, str(bad), value)
    return clean


def read_section(raw: Any, cls: type, where: str, problems: Problems) -> Dict[str, Any]:
    """The section ``cls`` from untrusted ``raw``: each good value kept, each bad one defaulted and named."""
    section = default_section(cls)
    if not isinstance(raw, dict):
        problems.add(where, "an object", raw, missing=raw is None)
        return section
    for f in dataclasses.fields(cls):
        kind = f.metadata["kind"]
        if f.name not in raw:
            if f.metadata["required"]:
                problems.add(f"{where}.{f.name}", "an object" if isinstance(kind, Map) else kind.expected,
                             missing=True)
            continue
        value = raw[f.name]
        if isinstance(kind, Map):
            section[f.name] = _read_map(value, kind, f"{where}.{f.name}", problems)
            continue
        try:
            section[f.name] = kind.check(value)
        except Bad as bad:
            problems.add(f"{where}.{f.name}", str(bad), value)
    return section


@dataclass
class Reading:
    """What ``from_json`` made of a decoded file. ``error`` is set when the sections could not be read at all."""

    schema_version: Optional[int] = None
    written_at: Optional[str] = None
    evaluated_at: Optional[str] = None
    service: Dict[str, Any] = field(default_factory=lambda: default_section(ServiceInfo))
    runtime_diagnostics: Dict[str, Dict[str, Any]] = field(
        default_factory=lambda: {name: default_section(cls) for name, cls in SECTIONS})
    problems: List[str] = field(default_factory=list)
    error: Optional[Tuple[str, str]] = None  # (status, reason)


def from_json(data: Any) -> Reading:
    """Read a decoded diagnostics.json tolerantly: every good value, defaults for the rest, and the problems."""
    reading = Reading()
    if not isinstance(data, dict):
        reading.error = (STATUS_INVALID, f"expected a JSON object, got {describe(data)}")
        return reading
    problems = Problems()
    version = data.get("schema_version")
    if isinstance(version, float) and version.is_integer():
        version = int(version)
    reading.schema_version = version if isinstance(version, int) and not isinstance(version, bool) else None
    for name in ("written_at", "evaluated_at"):
        if parse_iso(data.get(name)) is not None:
            setattr(reading, name, data[name])
        else:
            problems.add(name, "an ISO-8601 time", data.get(name), missing=name not in data)
    if reading.schema_version != SCHEMA_VERSION:
        reading.error = (STATUS_UNSUPPORTED_SCHEMA,
                         f"schema_version {describe(version)} is not supported (expected {SCHEMA_VERSION})")
        return reading
    reading.service = read_section(data.get("service"), ServiceInfo, "service", problems)
    raw = data.get("runtime_diagnostics")
    if not isinstance(raw, dict):
        problems.add("runtime_diagnostics", "an object", raw, missing=raw is None)
        raw = {}
    for name, cls in SECTIONS:
        reading.runtime_diagnostics[name] = read_section(raw.get(name), cls, f"runtime_diagnostics.{name}", problems)
    reading.problems = list(problems)
    return reading


# -- the health verdict ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Health:
    code: int             # EXIT_HEALTHY, EXIT_ALERTING or EXIT_UNKNOWN
    label: str            # VERDICT_HEALTHY, VERDICT_ALERTING, VERDICT_UNKNOWN, VERDICT_STOPPED or VERDICT_FAILED
    alerts: Tuple[str, ...]  # what makes the figures unhealthy, in words (for stopped/failed: the last figures)
    summary: str = ""     # stopped/failed: "stopped at … — last verdict healthy", one line; "" otherwise


def idle_keys(liveness: Mapping[str, Any]) -> List[str]:
    """The liveness keys that are idle: flagged, never seen, or past their threshold — a file that disagrees
    with itself is read the unhealthy way."""
    details, thresholds = liveness.get("details", {}), liveness.get("thresholds", {})
    missing = liveness.get("missing", {})
    out = []
    for check in LIVENESS_CHECKS:
        age, limit = details.get(check.key), thresholds.get(check.key)
        over = is_positive_number(limit) and isinstance(age, (int, float)) and age > limit
        if liveness.get(check.idle_flag) is True or missing.get(check.key) is True or over:
            out.append(check.key)
    return out


def stale_symbols(liveness: Mapping[str, Any]) -> Dict[str, str]:
    """The stale symbols, sorted, each with its failed check: listed as stale, given a check, never seen, or past a
    threshold — a file that disagrees with itself is read the unhealthy way."""
    checks, details = liveness.get("symbol_checks", {}), liveness.get("symbol_details", {})
    thresholds = liveness.get("symbol_thresholds", {})
    out: Dict[str, str] = {}
    for symbol, ages in details.items():
        for check in SYMBOL_CHECKS:
            age, limit = ages.get(check.key), thresholds.get(check.key)
            if is_positive_number(limit) and isinstance(age, (int, float)) and age > limit:
                out[symbol] = check.key
                break
    for symbol in liveness.get("missing_symbols", []):
        out.setdefault(symbol, SYMBOL_CHECKS[0].key)
    for symbol in (*liveness.get("stale_symbols", []), *checks):
        out[symbol] = checks.get(symbol) or out.get(symbol) or SYMBOL_CHECKS[0].key
    return dict(sorted(out.items()))


def stale_symbol_text(symbol: str, check: str, liveness: Mapping[str, Any]) -> str:
    """``ETHUSDT (no bars for 4m)``, ``SOLUSDT (price frozen for 12m)``, ``XRPUSDT (no bars ever)``; a name from
    the file is quoted at most SHORT_CHARS long."""
    label = next((c.label for c in SYMBOL_CHECKS if c.key == check), shorten(check))
    name = shorten(symbol)
    if check == SYMBOL_CHECKS[0].key and symbol in liveness.get("missing_symbols", []):
        return f"{name} ({label} ever)"
    age = liveness.get("symbol_details", {}).get(symbol, {}).get(check)
    return f"{name} ({label} for {format_age(age)})" if isinstance(age, (int, float)) else f"{name} ({label})"


def shown_stale_symbols(liveness: Mapping[str, Any]) -> Tuple[List[Tuple[str, str, str]], int]:
    """What a reader names of the stale symbols: (symbol, failed check, :func:`stale_symbol_text`) of the first
    MAX_STALE_SYMBOLS_SHOWN, and how many more there are — the verdict, the probe and the panel alike."""
    stale = list(stale_symbols(liveness).items())
    shown = [(symbol, check, stale_symbol_text(symbol, check, liveness))
             for symbol, check in stale[:MAX_STALE_SYMBOLS_SHOWN]]
    return shown, len(stale) - len(shown)


def more_stale_text(more: int) -> str:
    return f"and {more} more stale symbol{'' if more == 1 else 's'}"


def symbol_limit_text(liveness: Mapping[str, Any], check: Optional[str] = None, absent: str = "-") -> str:
    """The per-symbol threshold(s) as readers print them: ``check``'s (``3m``), or every check's (``3m / 10m``);
    ``absent`` when there is none."""
    thresholds = liveness.get("symbol_thresholds", {})
    keys = [check] if check is not None else [c.key for c in SYMBOL_CHECKS]
    return " / ".join(format_age(thresholds[k]) for k in keys if is_positive_number(thresholds.get(k))) or absent


def fresh_symbols_text(liveness: Mapping[str, Any]) -> str:
    """The market data when no symbol is stale: ``all 8 symbols fresh``, or ``not checked`` (no threshold, no
    symbol, or liveness disabled)."""
    checked = liveness.get("enabled") is not False and any(
        is_positive_number(liveness.get("symbol_thresholds", {}).get(c.key)) for c in SYMBOL_CHECKS)
    count = len(liveness.get("symbol_details", {}))
    if not checked or count == 0:
        return NOT_CHECKED
    return f"all {count} symbol{'' if count == 1 else 's'} fresh"


def run_ended(block: Mapping[str, Any]) -> Optional[str]:
    """SERVICE_STOPPED or SERVICE_FAILED when a well-formed block, fresh or stale, says the run ended; else None."""
    if not isinstance(block, Mapping) or block.get("status") not in (STATUS_OK, STATUS_STALE):
        return None
    service = block.get("service")
    state = service.get("state") if isinstance(service, Mapping) else None
    return state if state in (SERVICE_STOPPED, SERVICE_FAILED) else None


def health(block: Mapping[str, Any]) -> Health:
    """The one verdict on a loaded block, first match wins: unknown when the file is missing, unreadable or
    malformed; stopped / failed when it says the run ended (fresh or stale: the more useful truth); unknown
    when stale; alerting on an idle key, a stale symbol, a ledger/registry mismatch or an unprotected underwater
    position; healthy otherwise."""
    ended = run_ended(block)
    if ended is not None:
        last = _figures_verdict(block)
        service = block["service"]
        why = f" ({service['failure']})" if ended == SERVICE_FAILED and service.get("failure") else ""
        said = last.label + (f": {', '.join(last.alerts)}" if last.alerts else "")
        return Health(EXIT_UNKNOWN, ended, last.alerts,
                      f"{ended} at {service.get('stopped_at') or 'an unknown time'}{why} — last verdict {said}")
    if block.get("status") != STATUS_OK:
        return Health(EXIT_UNKNOWN, VERDICT_UNKNOWN, ())
    return _figures_verdict(block)


def _figures_verdict(block: Mapping[str, Any]) -> Health:
    """Alerting or healthy, from the block's figures alone."""
    rd = block["runtime_diagnostics"]
    live, ex = rd["liveness"], rd["exit_pipeline"]
    alerts = [f"{key} idle" + (" (never seen)" if live["missing"].get(key) is True else "")
              for key in idle_keys(live)]
    shown, more = shown_stale_symbols(live)
    if shown:
        alerts.append(f"{MARKET_DATA_STALE}: " + ", ".join(text for _, _, text in shown)
                      + (f" {more_stale_text(more)}" if more else ""))
    if ex["ledger_registry_mismatch"] or ex["tp_sl_missing_count"] > 0:
        alerts.append(f"ledger/registry mismatch ({ex['tp_sl_missing_count']} open without TP/SL)")
    elif ex["underwater_without_tp_sl_count"] > 0:
        alerts.append(f"{ex['underwater_without_tp_sl_count']} underwater without TP/SL")
    if alerts:
        return Health(EXIT_ALERTING, VERDICT_ALERTING, tuple(alerts))
    return Health(EXIT_HEALTHY, VERDICT_HEALTHY, ())


# -- the JSON Schema, generated -------------------------------------------------------------------
SCHEMA_ID = "https://github.com/otel-diag/otel-diag/docs/runtime_diagnostics.schema.json"


def _field_schema(f: dataclasses.Field) -> Dict[str, Any]:
    kind = f.metadata["kind"]
    schema = {**kind.schema, **f.metadata["schema"]}
    if f.metadata["enum"] is not None:
        schema["enum"] = list(f.metadata["enum"])
    if f.metadata["doc"]:
        schema["description"] = f.metadata["doc"]
    return schema


def _section_schema(cls: type, description: str = "") -> Dict[str, Any]:
    fields = dataclasses.fields(cls)
    schema: Dict[str, Any] = {"type": "object"}
    if description:
        schema["description"] = description
    schema["required"] = [f.name for f in fields if f.metadata["required"]]
    schema["properties"] = {f.name: _field_schema(f) for f in fields}
    schema["additionalProperties"] = True
    return schema


def json_schema() -> Dict[str, Any]:
    """The JSON Schema of diagnostics.json, from the dataclasses above (docs/runtime_diagnostics.schema.json)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": DIAGNOSTICS_FILE,
        "description": "The executor's runtime diagnostics state file (docs/state_files.md). Generated from "
                       "execution/diagnostics_document.py by `make schema`. Required: the envelope and every key "
                       "of spec PATCHSET_v7.6_S2 §4.1; the documented extras are described and optional; unknown "
                       "keys are allowed (additive).",
        "type": "object",
        "required": ["schema_version", "written_at", "evaluated_at", "service", "runtime_diagnostics"],
        "properties": {
            "schema_version": {"const": SCHEMA_VERSION, "description": "Format version; readers reject any other value."},
            "written_at": {"type": "string", "format": "date-time",
                           "description": "Wall-clock time of the write; readers judge staleness by it "
                                          f"(stale after {STALE_AFTER_INTERVALS} × publish_interval_seconds)."},
            "evaluated_at": {"type": "string", "format": "date-time",
                             "description": "Engine-clock time the liveness was evaluated at (simulated time in replay)."},
            "service": _section_schema(ServiceInfo, "Who wrote the file."),
            "runtime_diagnostics": {
                "type": "object",
                "required": [name for name, _ in SECTIONS],
                "properties": {name: _section_schema(cls) for name, cls in SECTIONS},
                "additionalProperties": True,
            },
        },
        "additionalProperties": True,
    }


def schema_text() -> str:
    """The schema file's exact text."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # ``make schema``: python -m execution.diagnostics_document > docs/runtime_diagnostics.schema.json
    sys.stdout.write(schema_text())
