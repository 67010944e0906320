"""Publishing ``runtime_diagnostics`` (spec §4.1) and ``diagnostics.json``, atomically.

Usage::

    state = {}
    write_runtime_diagnostics_state(state, cfg.diagnostics.liveness)   # fills state["runtime_diagnostics"]

    publisher = DiagnosticsPublisher("state", cfg, clock=clock, service={"scenario": "healthy"})
    publisher.maybe_publish(engine.positions_state)    # every publish_interval_seconds of engine time
    publisher.publish(final=True)                      # at shutdown

A failed write (read-only folder, disk full) is logged, counted and retried at the next
interval; it never raises into the trading loop and leaves no temp file behind.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any, Callable, Dict, Optional
from urllib.parse import urlsplit, urlunsplit

import otel_diag
from execution.atomic import atomic_write_json
from execution.config import AppConfig
from execution.diagnostics_document import (
    DIAGNOSTICS_FILE,
    POSITIONS_FILE,
    SCHEMA_VERSION,
    SECTIONS,
    SERVICE_RUNNING,
    SERVICE_STOPPED,
    DiagnosticsDocument,
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


def runtime_diagnostics_block(snapshot: RuntimeDiagnosticsSnapshot) -> Dict[str, Any]:
    """The ``runtime_diagnostics`` dict, as diagnostics.json holds it (execution/diagnostics_document.py)."""
    sections = (snapshot.veto_counters, snapshot.exit_pipeline_status, snapshot.liveness_alerts)
    return {name: section_to_json(section) for (name, _), section in zip(SECTIONS, sections)}


def _without_credentials(url: Optional[str]) -> Optional[str]:
    """``url`` without ``user:password@``, query or fragment: diagnostics.json is readable by all (0644).

    The panel only appends ``/trace/<id>`` to it; a URL that does not parse is left out.
    """
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    except ValueError:
        return None


def write_runtime_diagnostics_state(state: dict, cfg_liveness: Any, *, now: Any = None) -> Dict[str, Any]:
    """Fill ``state["runtime_diagnostics"]`` from one snapshot of the ``trading.*`` instruments; return the block."""
    block = runtime_diagnostics_block(build_runtime_diagnostics_snapshot(cfg_liveness, now=now))
    state["runtime_diagnostics"] = block
    return block


class DiagnosticsPublisher:
    """Writes ``diagnostics.json`` (and ``positions.json``) every publish interval of engine time."""

    def __init__(self, state_dir: str, cfg: AppConfig, clock: Callable[[], float],
                 on_publish: Optional[Callable[[dict], None]] = None, service: Optional[Dict[str, Any]] = None,
                 wall_clock: Callable[[], float] = time.time, telemetry: Optional[otel_diag.Telemetry] = None) -> None:
        self.state_dir = state_dir
        self.cfg = cfg
        self.clock = clock
        self.wall_clock = wall_clock
        self.on_publish = on_publish
        self.interval = float(cfg.diagnostics.publish_interval_seconds)
        self.telemetry = telemetry or current_telemetry()
        self.service = service_info({
            **self.telemetry.service, **(service or {}), "pid": os.getpid(),
            "publish_interval_seconds": self.interval, "state": SERVICE_RUNNING,
            "jaeger_ui_url": _without_credentials(os.environ.get("JAEGER_UI_URL") or cfg.telemetry.jaeger_ui_url)})
        self.path = os.path.join(state_dir, DIAGNOSTICS_FILE)
        self.positions_path = os.path.join(state_dir, POSITIONS_FILE)
        self._last: Optional[float] = None
        self.publishes = 0
        self.failures = 0
        self.last_document: Optional[dict] = None

    def maybe_publish(self, positions: Optional[Callable[[], dict]] = None) -> bool:
        """Publish when an interval of engine time has passed since the last publish (or never published)."""
        now = self.clock()
        if self._last is not None and now - self._last < self.interval:
            return False
        return self.publish(positions=positions)

    def document(self, final: bool = False) -> Dict[str, Any]:
        """The whole diagnostics.json document, evaluated now."""
        evaluated = self.clock()
        written = self.wall_clock()
        snapshot = build_runtime_diagnostics_snapshot(self.cfg.diagnostics.liveness, telemetry=self.telemetry)
        return to_json(DiagnosticsDocument(
            written_at=to_iso(written), evaluated_at=to_iso(evaluated),
            service=dataclasses.replace(self.service, state=SERVICE_STOPPED if final else SERVICE_RUNNING,
                                        stopped_at=to_iso(written) if final else None),
            veto_counters=snapshot.veto_counters, exit_pipeline=snapshot.exit_pipeline_status,
            liveness=snapshot.liveness_alerts))

    def publish(self, final: bool = False, positions: Optional[Callable[[], dict]] = None) -> bool:
        """Write the files now; False (logged, retried next interval) when the write failed."""
        self._last = self.clock()
        try:
            doc = self.document(final=final)
            atomic_write_json(self.path, doc)
            if positions is not None:
                atomic_write_json(self.positions_path, positions())
        except Exception as exc:
            self.failures += 1
            _log.exception("publish", f"diagnostics: writing {self.path} failed ({type(exc).__name__}: {exc}); "
                                      "trading continues, retrying at the next interval")
            return False
        self.publishes += 1
        self.last_document = doc
        if self.on_publish is not None:
            try:
                self.on_publish(doc)
            except Exception:
                _log.exception("on_publish", "diagnostics: the on_publish hook failed")
        return True

    def close(self) -> None:
        """Nothing to release: every write is complete when ``publish`` returns."""


__all__ = ["DiagnosticsPublisher", "write_runtime_diagnostics_state", "runtime_diagnostics_block", "SCHEMA_VERSION",
           "DIAGNOSTICS_FILE"]
