"""Publishing ``runtime_diagnostics`` (spec §4.1) and ``diagnostics.json``, atomically.

Usage::

    state = {}
    write_runtime_diagnostics_state(state, cfg.diagnostics.liveness)   # fills state["runtime_diagnostics"]

    publisher = DiagnosticsPublisher("state", cfg, clock=clock, service={"scenario": "healthy"},
                                     min_write_seconds=REPLAY_MIN_WRITE_SECONDS)     # replay: see below
    publisher.maybe_publish(engine.positions_state)    # every publish_interval_seconds of engine time
    publisher.publish(final=True)                      # at shutdown
    publisher.publish(failure="journal.jsonl: No space left on device")   # the run stopped on an error

Every ``publish_interval_seconds`` of engine time is a tick: the tick's document is evaluated
and handed to ``on_publish``. The files are written at a tick when ``min_write_seconds`` of wall
time have passed since the last write (0, the default and the realtime pace: at every tick),
and always at the end. In a replay the engine clock runs hundreds of times faster than the
wall, so the executor writes at most every :data:`REPLAY_MIN_WRITE_SECONDS` — readers poll at
human speed, and a write (a document build, two fsyncs, two renames) costs several engine
cycles. A written file is always the document of the tick it was written at; a tick that no
hook reads and no write is due at is not built (the document is a function of the
instruments and the engine clock, so nothing that anyone reads changes).

A failed write (read-only folder, disk full) is logged, counted and retried at the next
interval; it never raises into the trading loop and leaves no temp file behind. The
``before_write`` hook runs before every write (the executor syncs its journal there, so no
file counts a record the journal does not hold); what it raises is the caller's.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any, Callable, Dict, Optional, Sequence

import otel_diag
from otel_diag.redact import url_without_credentials
from execution.atomic import atomic_write_json
from execution.config import AppConfig
from execution.diagnostics_document import (
    DIAGNOSTICS_FILE,
    POSITIONS_FILE,
    SCHEMA_VERSION,
    SECTIONS,
    SERVICE_FAILED,
    SERVICE_RUNNING,
    SERVICE_STOPPED,
    DiagnosticsDocument,
    clip,
    section_to_json,
    service_info,
    to_iso,
    to_json,
)
from execution.diagnostics_metrics import (
    RuntimeDiagnosticsSnapshot,
    current_telemetry,
    build_runtime_diagnostics_snapshot,
)

_log = otel_diag.RateLimitedLog(logging.getLogger("execution.state_publish"))

# In a replay, diagnostics.json and positions.json are rewritten at most this often (wall seconds).
REPLAY_MIN_WRITE_SECONDS = 0.25


def runtime_diagnostics_block(snapshot: RuntimeDiagnosticsSnapshot) -> Dict[str, Any]:
    """The ``runtime_diagnostics`` dict, as diagnostics.json holds it (execution/diagnostics_document.py)."""
    sections = (snapshot.veto_counters, snapshot.exit_pipeline_status, snapshot.liveness_alerts)
    return {name: section_to_json(section) for (name, _), section in zip(SECTIONS, sections)}


def write_runtime_diagnostics_state(state: dict, cfg_liveness: Any, *, now: Any = None) -> Dict[str, Any]:
    """Fill ``state["runtime_diagnostics"]`` from one snapshot of the ``trading.*`` instruments; return the block."""
    block = runtime_diagnostics_block(build_runtime_diagnostics_snapshot(cfg_liveness, now=now))
    state["runtime_diagnostics"] = block
    return block


class DiagnosticsPublisher:
    """Writes ``diagnostics.json`` (and ``positions.json``) every publish interval of engine time."""

    def __init__(self, state_dir: str, cfg: AppConfig, clock: Callable[[], float],
                 on_publish: Optional[Callable[[dict], None]] = None, service: Optional[Dict[str, Any]] = None,
                 wall_clock: Callable[[], float] = time.time, telemetry: Optional[otel_diag.Telemetry] = None,
                 before_write: Optional[Callable[[], None]] = None, min_write_seconds: float = 0.0,
                 symbols: Optional[Sequence[str]] = None) -> None:
        self.state_dir = state_dir
        # the universe whose market data is checked per symbol (a symbol never stamped is stale): the strategy's
        self.symbols = tuple(cfg.strategy.symbols if symbols is None else symbols)
        self.before_write = before_write
        self.cfg = cfg
        self.clock = clock
        self.wall_clock = wall_clock
        self.on_publish = on_publish
        self.interval = float(cfg.diagnostics.publish_interval_seconds)
        self.telemetry = telemetry or current_telemetry()
        self.service = service_info({
            **self.telemetry.service, **(service or {}), "pid": os.getpid(),
            "publish_interval_seconds": self.interval, "state": SERVICE_RUNNING,
            "jaeger_ui_url": url_without_credentials(os.environ.get("JAEGER_UI_URL") or cfg.telemetry.jaeger_ui_url)})
        self.path = os.path.join(state_dir, DIAGNOSTICS_FILE)
        self.positions_path = os.path.join(state_dir, POSITIONS_FILE)
        self.min_write_seconds = float(min_write_seconds)
        self._last: Optional[float] = None  # engine time of the last tick
        self._last_write: Optional[float] = None  # wall time of the last write attempt
        self.ticks = 0  # intervals of engine time reached (maybe_publish)
        self.publishes = 0  # successful writes of the files
        self.failures = 0
        self.last_document: Optional[dict] = None

    def maybe_publish(self, positions: Optional[Callable[[], dict]] = None) -> bool:
        """A tick when an interval of engine time has passed since the last one (or at the first call):
        the files are written if the write cadence allows, and ``on_publish`` gets the tick's document.
        True when the files were written."""
        now = self.clock()
        if self._last is not None and now - self._last < self.interval:
            return False
        self.ticks += 1
        if self._write_due():
            return self.publish(positions=positions)
        self._last = now
        if self.on_publish is not None:
            try:
                doc = self.document()
            except Exception:
                _log.exception("document", "diagnostics: building the document failed")
                return False
            self.last_document = doc
            self._notify(doc)
        return False

    def _write_due(self) -> bool:
        if self.min_write_seconds <= 0 or self._last_write is None:
            return True
        elapsed = self.wall_clock() - self._last_write
        return elapsed >= self.min_write_seconds or elapsed < 0  # a wall clock set back: write, restart the cadence

    def _notify(self, doc: dict) -> None:
        if self.on_publish is not None:
            try:
                self.on_publish(doc)
            except Exception:
                _log.exception("on_publish", "diagnostics: the on_publish hook failed")

    def document(self, final: bool = False, failure: Optional[str] = None) -> Dict[str, Any]:
        """The whole diagnostics.json document, evaluated now; ``failure`` says the run failed (kept as one line
        of at most MAX_TEXT_CHARS, whatever the caller passes)."""
        failure = clip(" ".join(failure.split())) if failure else None
        evaluated = self.clock()
        written = self.wall_clock()
        snapshot = build_runtime_diagnostics_snapshot(self.cfg.diagnostics.liveness, telemetry=self.telemetry,
                                                      symbols=self.symbols)
        state = SERVICE_FAILED if failure else SERVICE_STOPPED if final else SERVICE_RUNNING
        return to_json(DiagnosticsDocument(
            written_at=to_iso(written), evaluated_at=to_iso(evaluated),
            service=dataclasses.replace(self.service, state=state, failure=failure or None,
                                        stopped_at=None if state == SERVICE_RUNNING else to_iso(written)),
            veto_counters=snapshot.veto_counters, exit_pipeline=snapshot.exit_pipeline_status,
            liveness=snapshot.liveness_alerts))

    def publish(self, final: bool = False, positions: Optional[Callable[[], dict]] = None,
                failure: Optional[str] = None) -> bool:
        """Write the files now; False (logged, retried next interval) when the write failed.

        ``failure`` makes this the last document, state "failed"; ``before_write`` is skipped then.
        """
        self._last = self.clock()
        self._last_write = self.wall_clock()
        if self.before_write is not None and not failure:
            self.before_write()
        try:
            doc = self.document(final=final, failure=failure)
            atomic_write_json(self.path, doc)
            if positions is not None:
                atomic_write_json(self.positions_path, positions())
        except Exception as exc:
            self.failures += 1
            message = (f"diagnostics: writing {self.path} failed ({type(exc).__name__}: {exc}); "
                       "trading continues, retrying at the next interval")
            if isinstance(exc, OSError):  # the disk's answer says it all: no traceback
                _log.warning("publish", message + " (further errors are logged at most once a minute)")
            else:
                _log.exception("publish", message)
            return False
        self.publishes += 1
        self.last_document = doc
        self._notify(doc)
        return True

    def close(self) -> None:
        """Nothing to release: every write is complete when ``publish`` returns."""


__all__ = ["DiagnosticsPublisher", "REPLAY_MIN_WRITE_SECONDS", "write_runtime_diagnostics_state", "runtime_diagnostics_block", "SCHEMA_VERSION",
           "DIAGNOSTICS_FILE"]
