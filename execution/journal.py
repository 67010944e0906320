"""The order and fill journal: one JSON object a line, deterministic for a seed.

Usage::

    with Journal("state/journal.jsonl") as journal:
        journal.order(order)
        journal.fill(fill)
        journal.retry(child, "transient_unavailable", ts)   # a transient reject the router retries
        journal.reject(slice_result, ts)                     # a slice finally refused

Records carry simulated (or wall) times from the injected clock as ISO-8601 UTC,
keys sorted, floats as Python's shortest repr: the same run gives the same bytes.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import IO, Any, Dict, Optional

from execution.models import ChildOrder, Fill, Order, SliceResult


def iso(ts: float) -> str:
    """Unix seconds as ISO-8601 UTC with microseconds, e.g. 2026-01-05T00:01:00.000000+00:00."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds")


JOURNAL_MODE = 0o644  # like every state file: owner writes, others read, whatever the umask


def _open_private(path: str) -> IO[str]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, JOURNAL_MODE)
    try:
        os.fchmod(fd, JOURNAL_MODE)  # os.open's mode is filtered by the umask only one way; make it exact
    except OSError:
        pass
    return os.fdopen(fd, "w", encoding="utf-8")


class Journal:
    def __init__(self, path: Optional[str]) -> None:
        self.path = path
        self._fh: Optional[IO[str]] = _open_private(path) if path else None
        self.orders = 0
        self.fills = 0
        self.rejects = 0
        self.retries = 0

    def _write(self, record: Dict[str, Any]) -> None:
        if self._fh is not None:
            self._fh.write(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")

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
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
