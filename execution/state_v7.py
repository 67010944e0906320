"""Read ``diagnostics.json`` for the risk panel and the probe: never raises, never trusts the file.

Usage::

    from execution.state_v7 import load_runtime_diagnostics_state
    block = load_runtime_diagnostics_state("state")
    block["status"]                      # "ok", "missing", "empty", "corrupt", "invalid", ...
    block["runtime_diagnostics"]["liveness"]["idle_router"]   # always a bool

Whatever is on disk — no file, an empty or truncated file, wrong types, an unknown
``schema_version`` — the result has the same shape: every key of the document model
(execution/diagnostics_document.py), each of its type, with defaults where the file had nothing
usable. ``status`` says how far the file can be trusted; only ``"ok"`` means fresh and
well-formed. ``problems`` lists every value that was replaced. This module keeps the file I/O,
the size cap, staleness and folder discovery; it imports no OpenTelemetry.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Union

from execution import diagnostics_document as dd

MAX_FILE_BYTES = 16 * 1024 * 1024

Now = Union[datetime, float, int, None]


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
def default_block(path: str = dd.DIAGNOSTICS_FILE) -> Dict[str, Any]:
    """The well-formed block with every default: what a reader sees when the file has nothing."""
    return {
        "status": dd.STATUS_MISSING,
        "reason": f"{path}: no diagnostics yet",
        "path": path,
        "schema_version": None,
        "written_at": None,
        "evaluated_at": None,
        "age_seconds": None,
        "max_age_seconds": dd.STALE_AFTER_INTERVALS * dd.DEFAULT_PUBLISH_INTERVAL_SECONDS,
        "stale": False,
        "problems": [],
        "service": dd.default_section(dd.ServiceInfo),
        "runtime_diagnostics": {name: dd.default_section(cls) for name, cls in dd.SECTIONS},
    }


def parse_runtime_diagnostics(data: Any, *, path: str = dd.DIAGNOSTICS_FILE, now: Now = None,
                              max_age_seconds: Optional[float] = None) -> Dict[str, Any]:
    """The block for already-decoded JSON ``data``: pure, never raises (see module docstring)."""
    try:
        return _parse(data, path, _now_seconds(now), max_age_seconds)
    except Exception as exc:  # a bug here must not take the panel or the probe down
        block = default_block(path)
        block.update(status=dd.STATUS_INVALID, reason=f"{path}: could not be interpreted ({type(exc).__name__})")
        return block


def _parse(data: Any, path: str, now_s: float, max_age_seconds: Optional[float]) -> Dict[str, Any]:
    block = default_block(path)
    reading = dd.from_json(data)
    block.update(schema_version=reading.schema_version, written_at=reading.written_at,
                 evaluated_at=reading.evaluated_at)
    block["age_seconds"] = _seconds_between(dd.parse_iso(reading.written_at), now_s)
    if reading.error is not None:
        status, reason = reading.error
        block.update(status=status, reason=f"{path}: {reason}")
        return block
    block.update(service=reading.service, runtime_diagnostics=reading.runtime_diagnostics)
    problems = reading.problems
    interval = block["service"]["publish_interval_seconds"]
    limit = max_age_seconds if dd.is_positive_number(max_age_seconds) else dd.STALE_AFTER_INTERVALS * interval
    block["max_age_seconds"] = float(limit)  # type: ignore[arg-type]
    age = block["age_seconds"]
    block["stale"] = age is not None and age > limit
    block["problems"] = list(problems)

    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        block.update(status=dd.STATUS_INVALID, reason=f"{path}: {problems[0]}{more}")
    elif block["stale"]:
        block.update(status=dd.STATUS_STALE, reason=(
            f"{path}: stale, written {dd.format_age(age)} ago, limit {dd.format_age(limit)}"
            + ("" if dd.is_positive_number(max_age_seconds) else f" (3 × publish interval {dd.format_age(interval)})")))
    else:
        block.update(status=dd.STATUS_OK, reason=f"{path}: written {dd.format_age(age)} ago")
    return block


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
        path = os.path.join(os.fspath(state_dir), dd.DIAGNOSTICS_FILE)
    except TypeError:
        block = default_block()
        block.update(status=dd.STATUS_UNREADABLE, reason=f"state dir {dd.describe(state_dir)} is not a path")
        return block
    try:
        return _load(path, now, max_age_seconds)
    except Exception as exc:  # pragma: no cover - last line of defence
        block = default_block(path)
        block.update(status=dd.STATUS_UNREADABLE, reason=f"{path}: {type(exc).__name__}")
        return block


def _load(path: str, now: Now, max_age_seconds: Optional[float]) -> Dict[str, Any]:
    block = default_block(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except (FileNotFoundError, NotADirectoryError):
        block.update(status=dd.STATUS_MISSING, reason=f"{path}: no such file (has the executor published yet?)")
        return block
    except OSError as exc:
        block.update(status=dd.STATUS_UNREADABLE, reason=f"{path}: cannot read ({exc.strerror or type(exc).__name__})")
        return block
    if len(raw) > MAX_FILE_BYTES:
        block.update(status=dd.STATUS_UNREADABLE, reason=f"{path}: larger than {MAX_FILE_BYTES} bytes")
        return block
    if not raw.strip():
        block.update(status=dd.STATUS_EMPTY, reason=f"{path}: empty file")
        return block
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        block.update(status=dd.STATUS_CORRUPT, reason=f"{path}: not valid JSON{where} (truncated or corrupt)")
        return block
    return parse_runtime_diagnostics(data, path=path, now=now, max_age_seconds=max_age_seconds)


# -- several executors ----------------------------------------------------------------------
@dataclass(frozen=True)
class ExecutorInstance:
    """One executor's state folder; ``name`` is the subfolder name, or the folder's own."""

    name: str
    state_dir: str


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
        if any(os.path.isfile(os.path.join(root, f)) for f in dd.STATE_FILES):
            found.append(ExecutorInstance(name=root_name, state_dir=root))
        subdirs = []
        with os.scandir(root) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_dir():
                    continue
                if any(os.path.isfile(os.path.join(entry.path, f)) for f in dd.STATE_FILES):
                    subdirs.append(ExecutorInstance(name=entry.name, state_dir=entry.path))
        found.extend(sorted(subdirs, key=lambda i: i.name))
    except OSError:
        pass
    return found or [ExecutorInstance(name=root_name, state_dir=root)]
