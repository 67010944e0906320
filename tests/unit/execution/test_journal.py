"""execution.journal: one sorted-key JSON object a line, ISO times, deterministic bytes."""
from __future__ import annotations

import pytest

from execution.journal import Journal, iso
from execution.models import Side, SliceResult
from tests.unit.execution.builders import T0, child, fill, journal_lines, order


def test_iso_when_unix_seconds_then_utc_with_microseconds_and_offset():
    assert iso(T0 + 60.5) == "2026-01-05T00:01:00.500000+00:00"


def test_order_when_written_then_one_record_with_sorted_keys(tmp_path):
    # Arrange
    path = tmp_path / "journal.jsonl"
    journal = Journal(str(path))

    # Act
    journal.order(order(quantity=1.5, ts=T0))
    journal.close()

    # Assert
    text = path.read_text(encoding="utf-8")
    assert text == ('{"order_id":"E000001","purpose":"entry","quantity":1.5,"reduce_only":false,"side":"buy",'
                    '"symbol":"BTCUSDT","ts":"2026-01-05T00:00:00.000000+00:00","type":"order"}\n')
    assert journal.orders == 1


def test_records_when_all_kinds_written_then_one_line_each_in_order(tmp_path):
    # Arrange
    path = tmp_path / "journal.jsonl"
    o = order()

    # Act
    with Journal(str(path)) as journal:
        journal.order(o)
        journal.retry(child(attempt=0), "transient_unavailable", T0)
        journal.fill(fill("BTCUSDT", Side.BUY, 1.0, 100.0, fee=0.04, order_id="E000001-0"))
        journal.reject(SliceResult(o, 1, 1.0, None, 3, "transient_unavailable"), T0 + 1)

    # Assert
    records = journal_lines(path)
    assert [r["type"] for r in records] == ["order", "reject", "fill", "reject"]
    assert records[1] == {"type": "reject", "ts": iso(T0), "order_id": "E000001", "symbol": "BTCUSDT",
                          "slice_index": 0, "attempts": 1, "reason": "transient_unavailable", "retried": True}
    assert records[2]["price"] == 100.0 and records[2]["fee"] == 0.04 and records[2]["parent_id"] == "E000001"
    assert records[3]["retried"] is False and records[3]["attempts"] == 3
    assert (journal.orders, journal.fills, journal.retries, journal.rejects) == (1, 1, 1, 1)


def test_journal_when_same_records_twice_then_byte_identical(tmp_path):
    def write(path):
        with Journal(str(path)) as journal:
            journal.order(order(quantity=0.1 + 0.2))
            journal.fill(fill("BTCUSDT", Side.BUY, 0.1 + 0.2, 64_000.123456789, fee=1 / 3))
        return path.read_bytes()

    assert write(tmp_path / "a.jsonl") == write(tmp_path / "b.jsonl")


def test_journal_when_no_path_then_counts_without_a_file(tmp_path):
    journal = Journal(None)

    journal.order(order())
    journal.fill(fill("BTCUSDT", Side.BUY, 1.0, 100.0))
    journal.flush()
    journal.close()

    assert (journal.orders, journal.fills) == (1, 1)
    assert journal.path is None


def test_close_when_called_twice_then_no_error(tmp_path):
    journal = Journal(str(tmp_path / "j.jsonl"))

    journal.close()
    journal.close()


def test_open_when_file_holds_records_then_refused_and_records_kept(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_text("old\n", encoding="utf-8")

    with pytest.raises(FileExistsError, match="move it aside first"):
        Journal(str(path))

    assert path.read_text(encoding="utf-8") == "old\n"


def test_open_when_file_empty_then_written_into(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b"")

    with Journal(str(path)) as journal:
        journal.order(order())

    assert [r["type"] for r in journal_lines(path)] == ["order"]
