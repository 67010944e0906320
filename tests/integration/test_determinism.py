"""Determinism: the same seed, config, data and scenario give a byte-identical journal."""
from __future__ import annotations

import os

import pytest

from execution.executor_live import RunOptions, run
from execution.scenarios import SCENARIOS
from tests.fixtures.bars import write_synthetic_csv

CYCLES = 300


def _run(state_dir, **kw) -> bytes:
    opts = RunOptions(state_dir=str(state_dir), cycles=CYCLES, fault_at=100, instrument=False, **kw)
    run(opts)
    with open(os.path.join(opts.state_dir, "journal.jsonl"), "rb") as fh:
        return fh.read()


def _positions(state_dir) -> bytes:
    with open(os.path.join(str(state_dir), "positions.json"), "rb") as fh:
        return fh.read()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_journal_when_same_seed_and_scenario_then_byte_identical(tmp_path, scenario):
    # Act
    first = _run(tmp_path / "a", seed=11, scenario=scenario)
    second = _run(tmp_path / "b", seed=11, scenario=scenario)

    # Assert
    assert first and first.count(b"\n") > 20
    assert first == second
    assert _positions(tmp_path / "a") == _positions(tmp_path / "b")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_journal_when_different_seed_then_different(tmp_path, scenario):
    assert _run(tmp_path / "a", seed=11, scenario=scenario) != _run(tmp_path / "b", seed=12, scenario=scenario)


def test_journal_when_different_scenario_then_different(tmp_path):
    assert _run(tmp_path / "a", seed=11) != _run(tmp_path / "b", seed=11, scenario="tp_sl_gap")


def test_journal_when_synthetic_bars_replayed_from_csv_then_identical_to_the_synthetic_run(tmp_path):
    # Arrange: dump the synthetic feed of seed 5 to CSV (floats as their shortest repr)
    path = tmp_path / "bars.csv"
    write_synthetic_csv(path, seed=5, cycles=CYCLES)

    # Act
    synthetic = _run(tmp_path / "synthetic", seed=5)
    from_csv = _run(tmp_path / "csv", seed=5, data=str(path))

    # Assert
    assert from_csv == synthetic
