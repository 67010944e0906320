"""run() that fails while starting releases what it took: the state dir's lock, the journal, telemetry."""
from __future__ import annotations

import pytest

import otel_diag
from execution.executor_live import RunOptions, run
from otel_diag.instrumentor import ExecutionInstrumentor


@pytest.mark.parametrize("instrument", [False, True])
def test_run_when_start_fails_then_lock_released_and_the_next_run_starts(tmp_path, instrument):
    # Arrange: a scenario no engine knows (the CLI's choices refuse it; in process it reaches the engine)
    with pytest.raises(ValueError, match="unknown scenario 'bogus'"):
        run(RunOptions(state_dir=str(tmp_path), scenario="bogus", cycles=5, instrument=instrument))

    # Act: the same process, the same state dir
    summary = run(RunOptions(state_dir=str(tmp_path), cycles=5, instrument=instrument))

    # Assert
    assert summary.cycles == 5
    assert otel_diag.current() is None and ExecutionInstrumentor.patched() == []
