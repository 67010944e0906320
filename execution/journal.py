"""The order and fill journal: one JSON object a line, deterministic for a seed, never torn.

Usage::

    with Journal("state/journal.jsonl", fsync=FSYNC_PUBLISH) as journal:
        journal.order(order)
        journal.fill(fill)
        journal.retry(child, "transient_unavailable", ts)   # a transient reject the router retries
        journal.reject(slice_result, ts)                     # a slice finally refused
        journal.flush()                                      # complete records to the OS
        journal.sync()                                       # ... and to the disk, per the fsync policy

Records carry simulated (or wall) times from the injected clock as ISO-8601 UTC,
keys sorted, floats as Python's shortest repr: the same run gives the same bytes.

A journal only ever starts a file (the executor moves an earlier run's journal aside first) and
never truncates history. Records are buffered in memory and reach the file whole, on ``flush``.
With ``keep_free_bytes`` the journal stops, as on a full disk, once a flush leaves less than that
free on its file system: every record is in, and the state files that count them still fit. When
the file cannot take the records (disk full, I/O error) it is cut back to the end of the last
complete record; either way :class:`JournalError` is raised, from then on at every write.
"""
from __future__ import annotations

import errno
import json
import os
from typing import Any, Dict, List, Optional

from execution.clock import iso  # the records' time format (engine.py and tests import it from here too)
from execution.models import ChildOrder, Fill, Order, SliceResult
from execution.state_dir import fsync_dir, open_regular


# When the journal is fsynced: before every state-file write (so a power loss reaches back at most one
# publish interval), after every record, or never (the OS writes it back in its own time).
FSYNC_PUBLISH, FSYNC_ALWAYS, FSYNC_NEVER = "publish", "always", "never"
FSYNC_POLICIES = (FSYNC_PUBLISH, FSYNC_ALWAYS, FSYNC_NEVER)
BUFFER_CHARS = 64 * 1024  # records held before a flush of their own; the executor flushes every cycle anyway


class JournalError(Exception):
    """The journal could not be written (disk full, I/O error): trading must stop. ``str()`` is one line."""

    def __init__(self, path: str, error: OSError, kept_bytes: int, lost_records: int) -> None:
        self.path = path
        self.error = error
        self.kept_bytes = kept_bytes
        self.lost_records = lost_records
        self.reason = f"{os.path.basename(path)}: {error.strerror or error}"  # e.g. journal.jsonl: No space left on device
        super().__init__(f"{path}: {error.strerror or error}; trading stopped, the journal ends on its last "
                         f"complete record ({kept_bytes} bytes; {lost_records} records not written)")


class Journal:
    def __init__(self, path: Optional[str], fsync: str = FSYNC_PUBLISH, keep_free_bytes: int = 0) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync: expected one of {', '.join(FSYNC_POLICIES)}, got {fsync!r}")
        self.path = path
        self.fsync = fsync
        self.keep_free_bytes = keep_free_bytes
        self._fd: Optional[int] = _open_new(path, sync_dir=fsync != FSYNC_NEVER) if path else None
        self._pending: List[str] = []
        self._pending_chars = 0
        self.end = 0  # bytes of complete records handed to the OS
        self.failure: Optional[JournalError] = None
        self.orders = 0
        self.fills = 0
        self.rejects = 0
        self.retries = 0

    def _write(self, record: Dict[str, Any]) -> None:
        if self._fd is None:
            if self.failure is not None:
                raise self.failure
            return
        line = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
        self._pending.append(line)
        self._pending_chars += len(line)
        if self.fsync == FSYNC_ALWAYS:
            self.sync()
        elif self._pending_chars >= BUFFER_CHARS:
            self.flush()

    def order(self, order: Order) -> None:
        self.orders += 1
        self._write({"type": "order", "ts": iso(order.ts), "order_id": order.order_id, "symbol": order.symbol,
                     "side": order.side.value, "quantity": order.quantity, "reduce_only": order.reduce_only,
                     "purpose": order.purpose})

    def fill(self, fill: Fill) -> None:
        self.fills += 1
        self._write({"type": "fill", "ts": iso(fill.ts), "order_id": fill.order_id, "parent_id": fill.parent_id,
                     "symbol": fill.symbol, "side": fill.side.value, "quantity": fill.quantity,
                     "price": fill.price, "fee": fill.fee, "reduce_only": fill.reduce_only})

    def reject(self, result: SliceResult, ts: float) -> None:
        """A slice the venue finally refused (not retried)."""
        self.rejects += 1
        self._write({"type": "reject", "ts": iso(ts), "order_id": result.order.order_id, "symbol": result.order.symbol,
                     "slice_index": result.slice_index, "attempts": result.attempts, "reason": result.reject_reason,
                     "retried": False})

    def retry(self, child: ChildOrder, reason: Optional[str], ts: float) -> None:
        """A transient reject of one attempt, which the router retries."""
        self.retries += 1
        self._write({"type": "reject", "ts": iso(ts), "order_id": child.parent_id, "symbol": child.symbol,
                     "slice_index": child.slice_index, "attempts": child.attempt + 1, "reason": reason,
                     "retried": True})

    def flush(self) -> None:
        """Hand the buffered records to the OS, whole; JournalError when the file cannot take them.

        The free-space check runs even with nothing to write: no trade without room to record it.
        """
        if self._fd is None:
            if self.failure is not None:
                raise self.failure
            return
        data = "".join(self._pending).encode("utf-8")
        self._pending.clear()
        self._pending_chars = 0
        view, done = memoryview(data), 0
        try:
            while done < len(data):
                written = os.write(self._fd, view[done:])
                if written <= 0:
                    raise OSError(errno.EIO, os.strerror(errno.EIO))
                done += written
            if self.keep_free_bytes:
                fs = os.fstatvfs(self._fd)
                if fs.f_bavail * fs.f_frsize < self.keep_free_bytes:  # every record is in; the next may not fit
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as exc:
            complete = data.rfind(b"\n", 0, done) + 1  # a torn record is cut off below
            self._fail(exc, self.end + complete, data.count(b"\n", complete))
        self.end += len(data)

    def sync(self) -> None:
        """``flush``, then fsync unless the policy is ``never``: what a state file counts is on disk first."""
        self.flush()
        if self._fd is not None and self.fsync != FSYNC_NEVER:
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                self._fail(exc, self.end, 0)

    def _fail(self, error: OSError, keep: int, lost: int) -> None:
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, keep)
        except OSError:
            pass
        finally:
            os.close(fd)
        self.end = keep
        self.failure = JournalError(self.path or "", error, keep, lost)
        raise self.failure

    def close(self) -> None:
        """``sync`` and close; after a failure, nothing more to write."""
        if self._fd is None:
            return
        try:
            self.sync()
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _open_new(path: str, sync_dir: bool) -> int:
    """The journal's fd: a new or empty regular file, appended to; an earlier run's records are never touched."""
    fd, st = open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)  # 0644, like every state file
    if st.st_size:
        os.close(fd)
        raise FileExistsError(errno.EEXIST, f"holds {st.st_size} bytes of an earlier run; move it aside first", path)
    if sync_dir:
        fsync_dir(os.path.dirname(os.path.abspath(path)))
    return fd
