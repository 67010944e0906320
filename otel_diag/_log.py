"""Rate-limited logging for the telemetry path: an error is logged at most once a minute per key.

Usage::

    _errors = RateLimitedLog(logging.getLogger(__name__))
    try:
        ...telemetry work...
    except Exception:
        _errors.exception("extract:risk.check", "attribute extraction failed")

Telemetry errors never propagate into the engine; they are counted and, at most once
per ``interval_seconds`` for the same key, logged with the traceback.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Dict

DEFAULT_INTERVAL_SECONDS = 60.0


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, interval_seconds: float = DEFAULT_INTERVAL_SECONDS) -> None:
        self.logger = logger
        self.interval_seconds = interval_seconds
        self._last: Dict[str, float] = {}
        self._lock = threading.Lock()
        self.suppressed = 0
        self.errors = 0

    def _due(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            self.errors += 1
            last = self._last.get(key)
            if last is not None and now - last < self.interval_seconds:
                self.suppressed += 1
                return False
            self._last[key] = now
            return True

    def exception(self, key: str, message: str) -> None:
        """Log ``message`` with the current exception's traceback, unless ``key`` was logged recently."""
        try:
            if self._due(key):
                self.logger.warning("%s (%s; further errors of this kind are logged at most once a minute)",
                                    message, key, exc_info=True)
        except Exception:  # logging itself must never hurt the caller
            pass

    def warning(self, key: str, message: str, *args: object) -> None:
        try:
            if self._due(key):
                self.logger.warning(message, *args)
        except Exception:
            pass
