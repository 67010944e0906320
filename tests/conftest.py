"""Shared fixtures: every test starts and ends with no telemetry configured and the engine unpatched."""
from __future__ import annotations

import contextlib
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
        ExecutionInstrumentor._targets = None  # a table given to the (singleton's) constructor
        ExecutionInstrumentor.table = ()


@pytest.fixture
def repo_root() -> str:
    return ROOT


@pytest.fixture
def bounded_shutdowns():
    """``install(bound_millis)``: run()'s ``otel_diag.shutdown()`` gets at most that bound until the test ends;
    returns the list of what each call returned (flushed or not)."""
    from tests.fixtures.replay import bounded_shutdown

    with contextlib.ExitStack() as stack:
        yield lambda bound_millis: stack.enter_context(bounded_shutdown(bound_millis))
