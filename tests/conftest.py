"""Shared fixtures: every test starts and ends with no telemetry configured and the engine unpatched."""
from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture(autouse=True)
def _no_telemetry_leaks():
    """Shut otel_diag down after each test so patches and state never leak into the next one."""
    yield
    if "otel_diag" in sys.modules:
        import otel_diag

        otel_diag.shutdown(timeout_millis=2_000)
        from otel_diag.instrumentor import ExecutionInstrumentor

        inst = ExecutionInstrumentor()
        if inst.is_instrumented_by_opentelemetry:
            inst.uninstrument()


@pytest.fixture
def repo_root() -> str:
    return ROOT


@pytest.fixture
def bounded_shutdowns(monkeypatch):
    """``install(bound_millis)``: run()'s ``otel_diag.shutdown()`` gets at most that bound; returns the
    list of (flushed, seconds) of each call, for tests that time how shutdown behaves."""
    import functools
    import time

    import otel_diag

    def install(bound_millis: float) -> list:
        calls: list = []
        original = otel_diag.shutdown

        @functools.wraps(original)
        def bounded(timeout_millis: float = bound_millis) -> bool:
            started = time.monotonic()
            flushed = original(timeout_millis=min(timeout_millis, bound_millis))
            calls.append((flushed, time.monotonic() - started))
            return flushed

        monkeypatch.setattr(otel_diag, "shutdown", bounded)
        return calls

    return install
