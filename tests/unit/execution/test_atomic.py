"""execution.atomic: a reader sees the old file or the new one, never a partial one."""
from __future__ import annotations

import json
import os
import stat

import pytest

from execution import atomic
from execution.atomic import atomic_write_json, atomic_write_text


def test_atomic_write_json_when_new_file_then_written_and_0644(tmp_path):
    # Arrange
    path = tmp_path / "positions.json"

    # Act
    atomic_write_json(str(path), {"positions": [], "realized_pnl": 1.5})

    # Assert
    assert json.loads(path.read_text(encoding="utf-8")) == {"positions": [], "realized_pnl": 1.5}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(tmp_path) == ["positions.json"]


def test_atomic_write_text_when_file_exists_then_replaced(tmp_path):
    path = tmp_path / "state.txt"
    path.write_text("old", encoding="utf-8")

    atomic_write_text(str(path), "new")

    assert path.read_text(encoding="utf-8") == "new"


def test_atomic_write_text_when_replace_fails_then_old_file_kept_and_no_temp_left(tmp_path, monkeypatch):
    # Arrange
    path = tmp_path / "state.txt"
    path.write_text("old", encoding="utf-8")

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", failing_replace)

    # Act
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(str(path), "new")

    # Assert
    assert path.read_text(encoding="utf-8") == "old"
    assert os.listdir(tmp_path) == ["state.txt"]


def test_atomic_write_json_when_written_then_compact_one_line_and_a_newline(tmp_path):
    path = tmp_path / "diagnostics.json"
    data = {"veto_counters": {"by_reason": {"min_notional": 3}, "overflow": False}, "symbols": ["BTCUSDT", "ünï"]}

    atomic_write_json(str(path), data)

    text = path.read_text(encoding="utf-8")
    assert text == json.dumps(data, separators=(",", ":")) + "\n"
    assert text.count("\n") == 1 and json.loads(text) == data


def test_atomic_write_json_when_not_finite_number_then_error_and_nothing_written(tmp_path):
    path = tmp_path / "x.json"

    with pytest.raises(ValueError):
        atomic_write_json(str(path), {"pnl": float("nan")})

    assert os.listdir(tmp_path) == []


def test_atomic_write_text_when_relative_path_then_temp_in_same_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    atomic_write_text("plain.txt", "x")

    assert (tmp_path / "plain.txt").read_text(encoding="utf-8") == "x"
