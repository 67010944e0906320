"""Read ``diagnostics.json`` for the risk panel and the probe: never raises, never trusts the file.

Usage::

    from execution.state_v7 import load_runtime_diagnostics_state
    block = load_runtime_diagnostics_state("state")
    block["status"]                      # "ok", "missing", "empty", "corrupt", "invalid", ...
    block["runtime_diagnostics"]["liveness"]["idle_router"]   # always a bool

Whatever is on disk — no file, an empty or truncated file, wrong types, an unknown
``schema_version`` — the result has the same shape: every key of spec §4.1 plus the
extras of ``docs/state_files.md``, each of its documented type, with defaults where the
file had nothing usable. ``status`` says how far the file can be trusted; only ``"ok"``
means fresh and well-formed. ``problems`` lists every value that was replaced.
Durations are finite and never negative.

This module is a reader of the file contract and imports no OpenTelemetry.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

DIAGNOSTICS_FILE = "diagnostics.json"
SCHEMA_VERSION = 1
DEFAULT_PUBLISH_INTERVAL_SECONDS = 60.0
STALE_AFTER_INTERVALS = 3
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_PROBLEMS = 50

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

# Liveness keys of the file contract (docs/state_files.md), in display order, with their idle flag.
LIVENESS_KEYS = ("signals", "orders", "exits", "exit_scans", "router")
IDLE_FLAGS = {key: f"idle_{key}" for key in LIVENESS_KEYS}

Now = Union[datetime, float, int, None]
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


class _Bad(ValueError):
    """A value of the wrong type or range; the message says what was expected."""


# -- value checkers: return the clean value or raise _Bad(expected) -----------------------
def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad("a number")
    try:
        result = float(value)
    except OverflowError:
        raise _Bad("a finite number") from None
    if not math.isfinite(result):
        raise _Bad("a finite number")
    return result


def _count(value: Any) -> int:
    try:
        number = _number(value)
    except _Bad:
        raise _Bad("an integer >= 0") from None
    if number < 0 or number != int(number):
        raise _Bad("an integer >= 0")
    return int(number)


def _duration(value: Any) -> float:
    number = _number(value)
    if number < 0:
        raise _Bad("seconds >= 0")
    return number


def _positive(value: Any) -> float:
    number = _number(value)
    if number <= 0:
        raise _Bad("a number > 0")
    return number


def _fraction(value: Any) -> float:
    number = _number(value)
    if not 0.0 <= number <= 1.0:
        raise _Bad("a ratio between 0 and 1")
    return number


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad("true or false")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad("a string")
    return value


def _opt_text(value: Any) -> Optional[str]:
    return None if value is None else _text(value)


def _opt_int(value: Any) -> Optional[int]:
    if value is None:
        return None
    number = _number(value)
    if number != int(number):
        raise _Bad("an integer or null")
    return int(number)


def _timestamp(value: Any) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or parse_timestamp(value) is None:
        raise _Bad("an ISO-8601 time or null")
    return value


def _trace_id(value: Any) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or not _TRACE_ID.match(value):
        raise _Bad("a 32-hex-digit trace id or null")
    return value


def _symbols(value: Any) -> List[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Bad("a list of strings")
    return list(value)


Checker = Callable[[Any], Any]

# (key, checker, default, required by spec §4.1). Extras are optional: an older writer may lack them.
_VETO_FIELDS: Tuple[Tuple[str, Checker, Any, bool], ...] = (
    ("by_reason", ("map", _count), {}, True),
    ("total_signals", _count, 0, True),
    ("total_orders", _count, 0, True),
    ("total_vetoes", _count, 0, True),
    ("last_signal_ts", _timestamp, None, True),
    ("last_order_ts", _timestamp, None, True),
    ("last_veto_ts", _timestamp, None, True),
    ("by_symbol", ("map", _count), {}, False),
    ("by_reason_symbol", ("map2", _count), {}, False),
    ("router_events", ("map", _count), {}, False),
    ("overflow", _bool, False, False),
)
_EXIT_FIELDS: Tuple[Tuple[str, Checker, Any, bool], ...] = (
    ("last_exit_scan_ts", _timestamp, None, True),
    ("last_exit_trigger_ts", _timestamp, None, True),
    ("last_router_event_ts", _timestamp, None, True),
    ("open_positions_count", _count, 0, True),
    ("tp_sl_registered_count", _count, 0, True),
    ("tp_sl_missing_count", _count, 0, True),
    ("underwater_without_tp_sl_count", _count, 0, True),
    ("tp_sl_coverage_pct", _fraction, 0.0, True),
    ("ledger_registry_mismatch", _bool, False, True),
    ("tp_sl_orphan_count", _count, 0, False),
    ("underwater_without_tp_sl_symbols", _symbols, [], False),
    ("missing_tp_sl_symbols", _symbols, [], False),
    ("total_exit_scans", _count, 0, False),
    ("total_exit_triggers", _count, 0, False),
)
_LIVENESS_FIELDS: Tuple[Tuple[str, Checker, Any, bool], ...] = (
    ("enabled", _bool, True, False),
    ("idle_signals", _bool, False, True),
    ("idle_orders", _bool, False, True),
    ("idle_exits", _bool, False, True),
    ("idle_router", _bool, False, True),
    ("idle_exit_scans", _bool, False, False),
    ("details", ("map", _duration), {}, True),
    ("missing", ("map", _bool), {}, True),
    ("thresholds", ("map", _positive), {}, False),
    ("last_event_ts", ("map", _timestamp), {}, False),
    ("last_trace_ids", ("map", _trace_id), {}, False),
    ("evaluated_at", _timestamp, None, False),
)
_SERVICE_FIELDS: Tuple[Tuple[str, Checker, Any, bool], ...] = (
    ("name", _text, "executor", True),
    ("instance_id", _opt_text, None, False),
    ("environment", _opt_text, None, False),
    ("scenario", _opt_text, None, False),
    ("pace", _opt_text, None, False),
    ("seed", _opt_int, None, False),
    ("pid", _opt_int, None, False),
    ("publish_interval_seconds", _positive, DEFAULT_PUBLISH_INTERVAL_SECONDS, True),
    ("state", _opt_text, None, False),
    ("jaeger_ui_url", _opt_text, None, False),
)
_SECTIONS = (("veto_counters", _VETO_FIELDS), ("exit_pipeline", _EXIT_FIELDS), ("liveness", _LIVENESS_FIELDS))


# -- timestamps ---------------------------------------------------------------------------
def parse_timestamp(value: Any) -> Optional[datetime]:
    """An ISO-8601 string (``Z``, offsets; naive = UTC) as an aware datetime, or None."""
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        parsed.timestamp()  # reject values that cannot be placed on the Unix line
        return parsed
    except (ValueError, OverflowError, OSError, TypeError):
        return None


def _now_seconds(now: Now) -> float:
    if isinstance(now, datetime):
        aware = now if now.tzinfo is not None else now.replace(tzinfo=timezone.utc)
        return aware.timestamp()
    if isinstance(now, (int, float)) and not isinstance(now, bool) and math.isfinite(now):
        return float(now)
    return time.time()


def _seconds_between(earlier: Optional[datetime], later_seconds: float) -> Optional[float]:
    """Seconds from ``earlier`` to ``later_seconds``, clamped at 0 (clock skew is not negative age)."""
    if earlier is None:
        return None
    try:
        delta = later_seconds - earlier.timestamp()
    except (OverflowError, OSError, ValueError):
        return None
    return delta if math.isfinite(delta) and delta > 0 else 0.0


# -- the block ----------------------------------------------------------------------------
def _fresh(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else list(value) if isinstance(value, list) else value


def _default_section(fields: Tuple[Tuple[str, Checker, Any, bool], ...]) -> Dict[str, Any]:
    return {key: _fresh(default) for key, _, default, _ in fields}


def default_block(path: str = DIAGNOSTICS_FILE) -> Dict[str, Any]:
    """The well-formed block with every default: what a reader sees when the file has nothing."""
    return {
        "status": STATUS_MISSING,
        "reason": f"{path}: no diagnostics yet",
        "path": path,
        "schema_version": None,
        "written_at": None,
        "evaluated_at": None,
        "age_seconds": None,
        "max_age_seconds": STALE_AFTER_INTERVALS * DEFAULT_PUBLISH_INTERVAL_SECONDS,
        "stale": False,
        "problems": [],
        "service": _default_section(_SERVICE_FIELDS),
        "runtime_diagnostics": {name: _default_section(fields) for name, fields in _SECTIONS},
    }


class _Problems(list):
    def add(self, where: str, expected: str, value: Any = None, *, missing: bool = False) -> None:
        if len(self) >= MAX_PROBLEMS:
            return
        if missing:
            self.append(f"{where}: missing, expected {expected}")
        else:
            self.append(f"{where}: expected {expected}, got {_describe(value)}")


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _clean_map(raw: Any, check: Checker, nested: bool, where: str, problems: _Problems) -> Dict[str, Any]:
    if not isinstance(raw, dict):
        problems.add(where, "an object", raw)
        return {}
    clean: Dict[str, Any] = {}
    for key, value in raw.items():
        inner = f"{where}.{key if len(key) <= 40 else key[:37] + '...'}"
        if nested:
            clean[key] = _clean_map(value, check, False, inner, problems)
            continue
        try:
            clean[key] = check(value)
        except _Bad as bad:
            problems.add(inner, str(bad), value)
    return clean


def _clean_section(raw: Any, fields: Tuple[Tuple[str, Checker, Any, bool], ...], where: str,
                   problems: _Problems) -> Dict[str, Any]:
    section = _default_section(fields)
    if not isinstance(raw, dict):
        problems.add(where, "an object", raw, missing=raw is None)
        return section
    for key, check, default, required in fields:
        if key not in raw:
            if required:
                problems.add(f"{where}.{key}", _expected(check), missing=True)
            continue
        value = raw[key]
        if isinstance(check, tuple):
            section[key] = _clean_map(value, check[1], check[0] == "map2", f"{where}.{key}", problems)
            continue
        try:
            section[key] = check(value)
        except _Bad as bad:
            problems.add(f"{where}.{key}", str(bad), value)
    return section


def _expected(check: Any) -> str:
    if isinstance(check, tuple):
        return "an object"
    try:
        check(object())
    except _Bad as bad:
        return str(bad)
    return "a value"  # pragma: no cover - every checker rejects object()


def parse_runtime_diagnostics(data: Any, *, path: str = DIAGNOSTICS_FILE, now: Now = None,
                              max_age_seconds: Optional[float] = None) -> Dict[str, Any]:
    """The block for already-decoded JSON ``data``: pure, never raises (see module docstring)."""
    try:
        return _parse(data, path, _now_seconds(now), max_age_seconds)
    except Exception as exc:  # a bug here must not take the panel or the probe down
        block = default_block(path)
        block.update(status=STATUS_INVALID, reason=f"{path}: could not be interpreted ({type(exc).__name__})")
        return block


def _parse(data: Any, path: str, now_s: float, max_age_seconds: Optional[float]) -> Dict[str, Any]:
    block = default_block(path)
    if not isinstance(data, dict):
        block.update(status=STATUS_INVALID, reason=f"{path}: expected a JSON object, got {_describe(data)}")
        return block
    problems = _Problems()
    version = data.get("schema_version")
    if isinstance(version, float) and version.is_integer():
        version = int(version)
    block["schema_version"] = version if isinstance(version, int) and not isinstance(version, bool) else None

    written = parse_timestamp(data.get("written_at"))
    if written is not None:
        block["written_at"] = data["written_at"]
        block["age_seconds"] = _seconds_between(written, now_s)
    else:
        problems.add("written_at", "an ISO-8601 time", data.get("written_at"), missing="written_at" not in data)
    if parse_timestamp(data.get("evaluated_at")) is not None:
        block["evaluated_at"] = data["evaluated_at"]
    else:
        problems.add("evaluated_at", "an ISO-8601 time", data.get("evaluated_at"), missing="evaluated_at" not in data)

    if block["schema_version"] != SCHEMA_VERSION:
        block.update(status=STATUS_UNSUPPORTED_SCHEMA,
                     reason=f"{path}: schema_version {_describe(version)} is not supported (expected {SCHEMA_VERSION})")
        return block

    block["service"] = _clean_section(data.get("service"), _SERVICE_FIELDS, "service", problems)
    raw = data.get("runtime_diagnostics")
    if not isinstance(raw, dict):
        problems.add("runtime_diagnostics", "an object", raw, missing=raw is None)
        raw = {}
    for name, fields in _SECTIONS:
        block["runtime_diagnostics"][name] = _clean_section(raw.get(name), fields, f"runtime_diagnostics.{name}", problems)

    interval = block["service"]["publish_interval_seconds"]
    limit = max_age_seconds if _is_positive(max_age_seconds) else STALE_AFTER_INTERVALS * interval
    block["max_age_seconds"] = float(limit)  # type: ignore[arg-type]
    age = block["age_seconds"]
    block["stale"] = age is not None and age > limit
    block["problems"] = list(problems)

    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        block.update(status=STATUS_INVALID, reason=f"{path}: {problems[0]}{more}")
    elif block["stale"]:
        block.update(status=STATUS_STALE, reason=(
            f"{path}: stale, written {format_age(age)} ago, limit {format_age(limit)}"
            + ("" if _is_positive(max_age_seconds) else f" (3 × publish interval {format_age(interval)})")))
    else:
        block.update(status=STATUS_OK, reason=f"{path}: written {format_age(age)} ago")
    return block


def _is_positive(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value) and value > 0
    except OverflowError:  # an int beyond float range: not a duration anyone measured
        return False


def format_age(seconds: Any) -> str:
    """Seconds as a short human duration: ``42s``, ``4m 10s``, ``12m``, ``2h 05m``, ``3d 04h``."""
    if not _is_positive(seconds):
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


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_runtime_diagnostics_state(state_dir: Any = "state", *, now: Now = None,
                                   max_age_seconds: Optional[float] = None) -> Dict[str, Any]:
    """Load ``<state_dir>/diagnostics.json`` into a well-formed block; never raises.

    ``now`` (a datetime or Unix seconds; default the wall clock) judges staleness: the file
    is stale when ``written_at`` is older than ``max_age_seconds``, by default three times
    the file's own ``service.publish_interval_seconds``.
    """
    try:
        path = os.path.join(os.fspath(state_dir), DIAGNOSTICS_FILE)
    except TypeError:
        block = default_block()
        block.update(status=STATUS_UNREADABLE, reason=f"state dir {_describe(state_dir)} is not a path")
        return block
    try:
        return _load(path, now, max_age_seconds)
    except Exception as exc:  # pragma: no cover - last line of defence
        block = default_block(path)
        block.update(status=STATUS_UNREADABLE, reason=f"{path}: {type(exc).__name__}")
        return block


def _load(path: str, now: Now, max_age_seconds: Optional[float]) -> Dict[str, Any]:
    block = default_block(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except (FileNotFoundError, NotADirectoryError):
        block.update(status=STATUS_MISSING, reason=f"{path}: no such file (has the executor published yet?)")
        return block
    except OSError as exc:
        block.update(status=STATUS_UNREADABLE, reason=f"{path}: cannot read ({exc.strerror or type(exc).__name__})")
        return block
    if len(raw) > MAX_FILE_BYTES:
        block.update(status=STATUS_UNREADABLE, reason=f"{path}: larger than {MAX_FILE_BYTES} bytes")
        return block
    if not raw.strip():
        block.update(status=STATUS_EMPTY, reason=f"{path}: empty file")
        return block
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        block.update(status=STATUS_CORRUPT, reason=f"{path}: not valid JSON{where} (truncated or corrupt)")
        return block
    return parse_runtime_diagnostics(data, path=path, now=now, max_age_seconds=max_age_seconds)


# -- several executors ----------------------------------------------------------------------
@dataclass(frozen=True)
class ExecutorInstance:
    """One executor's state folder; ``name`` is the subfolder name, or the folder's own."""

    name: str
    state_dir: str


_STATE_FILES = (DIAGNOSTICS_FILE, "positions.json", "journal.jsonl")


def list_executor_instances(state_dir: Any = "state") -> List[ExecutorInstance]:
    """The executors under ``state_dir``: itself when it holds state files, plus each subfolder
    that does, sorted by name. Never empty (a folder with nothing yet is one instance, so a
    reader reports it as missing) and never raises."""
    try:
        root = os.fspath(state_dir)
        root_name = os.path.basename(os.path.normpath(os.path.abspath(root))) or root
    except (TypeError, ValueError):
        return [ExecutorInstance(name=str(state_dir), state_dir=str(state_dir))]
    found: List[ExecutorInstance] = []
    try:
        if any(os.path.isfile(os.path.join(root, f)) for f in _STATE_FILES):
            found.append(ExecutorInstance(name=root_name, state_dir=root))
        subdirs = []
        with os.scandir(root) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_dir():
                    continue
                if any(os.path.isfile(os.path.join(entry.path, f)) for f in _STATE_FILES):
                    subdirs.append(ExecutorInstance(name=entry.name, state_dir=entry.path))
        found.extend(sorted(subdirs, key=lambda i: i.name))
    except OSError:
        pass
    return found or [ExecutorInstance(name=root_name, state_dir=root)]
