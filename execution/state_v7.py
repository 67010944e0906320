"""Read ``diagnostics.json`` for the risk panel and the probe: never raises, never trusts the file.

Usage::

    from execution.state_v7 import load_runtime_diagnostics_state
    block = load_runtime_diagnostics_state("state")
    block["status"]                      # "ok", "missing", "empty", "corrupt", "invalid", ...
    block["runtime_diagnostics"]["liveness"]["idle_router"]   # always a bool

Whatever is on disk — no file, an empty or truncated file, wrong types, an unknown
``schema_version``, a FIFO or a device in its place — the result has the same shape: every key of
the document model (execution/diagnostics_document.py), each of its type, with defaults where the
file had nothing usable, and it comes back at once (only a regular file is ever read, never more
than MAX_FILE_BYTES). ``status`` says how far the file can be trusted; only ``"ok"`` means fresh
and well-formed. ``problems`` lists every value that was replaced. This module keeps the file I/O,
the size cap, staleness and folder discovery; it imports no OpenTelemetry.
"""
from __future__ import annotations

import json
import math
import os
import stat
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Union

from execution import diagnostics_document as dd
from execution.files import file_kind, open_for_reading

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
    """Seconds from ``earlier`` to ``later_seconds`` (negative when ``earlier`` is later); None when unknown."""
    if earlier is None:
        return None
    try:
        delta = later_seconds - earlier.timestamp()
    except (OverflowError, OSError, ValueError):
        return None
    return delta if math.isfinite(delta) else None


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
    since = _seconds_between(dd.parse_iso(reading.written_at), now_s)
    block["age_seconds"] = None if since is None else max(since, 0.0)  # clock skew is not a negative age
    ahead = 0.0 if since is None else -since
    if reading.error is not None:
        status, reason = reading.error
        block.update(status=status, reason=f"{path}: {reason}")
        return block
    block.update(service=reading.service, runtime_diagnostics=reading.runtime_diagnostics)
    problems = reading.problems
    interval = block["service"]["publish_interval_seconds"]  # at most dd.MAX_PUBLISH_INTERVAL_SECONDS (its kind)
    asked = dd.is_positive_number(max_age_seconds)
    limit = min(float(max_age_seconds), dd.MAX_AGE_LIMIT_SECONDS) if asked else dd.STALE_AFTER_INTERVALS * interval
    block["max_age_seconds"] = limit
    age = block["age_seconds"]
    block["stale"] = age is not None and age > limit or ahead > dd.FUTURE_SKEW_SECONDS
    block["problems"] = list(problems)

    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        block.update(status=dd.STATUS_INVALID, reason=f"{path}: {problems[0]}{more}")
    elif ahead > dd.FUTURE_SKEW_SECONDS:
        block.update(status=dd.STATUS_STALE, reason=(
            f"{path}: written_at is {dd.format_age(ahead)} in the future (more than "
            f"{dd.format_age(dd.FUTURE_SKEW_SECONDS)} ahead of this clock), so its age is unknown"))
    elif block["stale"]:
        block.update(status=dd.STATUS_STALE, reason=(
            f"{path}: stale, written {dd.format_age(age)} ago, limit {dd.format_age(limit)}"
            + ("" if asked else f" ({dd.STALE_AFTER_INTERVALS} × publish interval {dd.format_age(interval)})")))
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


class NotRegularFile(OSError):
    """The path (or what its symlinks lead to) is a FIFO, a device, a socket or a folder."""

    def __init__(self, mode: int) -> None:
        kind = "a folder" if stat.S_ISDIR(mode) else file_kind(mode)
        super().__init__(f"{kind}, not a regular file")


class TooLarge(OSError):
    """The file holds more than MAX_FILE_BYTES."""


def _check_regular(info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise NotRegularFile(info.st_mode)
    if info.st_size > MAX_FILE_BYTES:
        raise TooLarge(f"larger than {MAX_FILE_BYTES} bytes")


def read_regular_file(path: str) -> bytes:
    """The bytes of the regular file at ``path`` (symlinks followed), never blocking and never more than
    MAX_FILE_BYTES: a FIFO, a device or a socket is refused before it is read (NotRegularFile), a larger
    file too (TooLarge)."""
    fd = open_for_reading(path, _check_regular)  # a device is never even opened; what was opened is checked again
    try:
        # The whole file in one read (one buffer, no join) unless it grows meanwhile; never past the cap.
        step = max(os.fstat(fd).st_size + 1, 1 << 16)
        chunks, left = [], MAX_FILE_BYTES + 1
        while left > 0:
            chunk = os.read(fd, min(left, step))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if len(raw) > MAX_FILE_BYTES:  # it grew while being read
        raise TooLarge(f"larger than {MAX_FILE_BYTES} bytes")
    return raw


def _load(path: str, now: Now, max_age_seconds: Optional[float]) -> Dict[str, Any]:
    block = default_block(path)
    try:
        raw = read_regular_file(path)
    except (FileNotFoundError, NotADirectoryError):
        block.update(status=dd.STATUS_MISSING, reason=f"{path}: no such file (has the executor published yet?)")
        return block
    except (NotRegularFile, TooLarge) as exc:
        block.update(status=dd.STATUS_UNREADABLE, reason=f"{path}: {exc}")
        return block
    except OSError as exc:
        block.update(status=dd.STATUS_UNREADABLE, reason=f"{path}: cannot read ({exc.strerror or type(exc).__name__})")
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


def _holds_state(folder: str) -> bool:
    """True when a state file's name is taken by anything but a folder. Only stat-ed, never opened: a FIFO
    there makes its folder an executor, which the loader then reports unreadable instead of hiding it."""
    for name in dd.STATE_FILES:
        try:
            if not stat.S_ISDIR(os.stat(os.path.join(folder, name)).st_mode):
                return True
        except (OSError, ValueError):
            continue
    return False


def list_executor_instances(state_dir: Any = "state") -> List[ExecutorInstance]:
    """The executors under ``state_dir``: itself when it holds state files, plus each subfolder
    that does, sorted by name. Never empty (a folder with nothing yet is one instance, so a
    reader reports it as missing), never opens a file and never raises."""
    try:
        root = os.fspath(state_dir)
        root_name = os.path.basename(os.path.normpath(os.path.abspath(root))) or root
    except (TypeError, ValueError):
        return [ExecutorInstance(name=str(state_dir), state_dir=str(state_dir))]
    found: List[ExecutorInstance] = []
    try:
        if _holds_state(root):
            found.append(ExecutorInstance(name=root_name, state_dir=root))
        subdirs = []
        with os.scandir(root) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_dir():
                    continue
                if _holds_state(entry.path):
                    subdirs.append(ExecutorInstance(name=entry.name, state_dir=entry.path))
        found.extend(sorted(subdirs, key=lambda i: i.name))
    except OSError:
        pass
    return found or [ExecutorInstance(name=root_name, state_dir=root)]
