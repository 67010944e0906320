"""execution.market_data: the seeded synthetic feed and the strict CSV loader."""
from __future__ import annotations

import os

import pytest

from execution.config import DEFAULT_SYMBOLS
from execution.market_data import (CSV_COLUMNS, LATEST_BAR_SECONDS, MAX_LINE_CHARS, DataError, SyntheticFeed, load_csv,
                                    parse_ts)
from tests.unit.execution.builders import T0

HEADER = ",".join(CSV_COLUMNS)


def _csv(tmp_path, *rows: str, header: str = HEADER, name: str = "bars.csv") -> str:
    path = tmp_path / name
    path.write_text("\n".join(([header] if header is not None else []) + list(rows)) + "\n", encoding="utf-8")
    return str(path)


def _closes(seed: int, count: int = 50):
    feed = SyntheticFeed(DEFAULT_SYMBOLS, seed=seed, start=T0, bar_seconds=60)
    return [tuple(b.close for b in bars.values()) for _, bars in feed.steps(count)]


# -- synthetic feed -------------------------------------------------------------------------
def test_steps_when_same_seed_then_identical_bars():
    assert _closes(7) == _closes(7)


def test_steps_when_different_seed_then_different_bars():
    assert _closes(7) != _closes(8)


def test_steps_when_eight_symbols_then_one_bar_per_symbol_per_step_on_the_bar_clock():
    # Arrange
    feed = SyntheticFeed(DEFAULT_SYMBOLS, seed=1, start=T0, bar_seconds=60)

    # Act
    steps = list(feed.steps(5))

    # Assert
    assert len(DEFAULT_SYMBOLS) >= 8
    assert [ts for ts, _ in steps] == [T0 + 60 * i for i in range(5)]
    for ts, bars in steps:
        assert tuple(bars) == DEFAULT_SYMBOLS
        assert all(b.ts == ts and b.symbol == s for s, b in bars.items())


def test_steps_when_many_bars_then_ohlc_consistent_and_continuous():
    feed = SyntheticFeed(DEFAULT_SYMBOLS, seed=3, start=T0, bar_seconds=60)
    previous = {}

    for _, bars in feed.steps(300):
        for sym, b in bars.items():
            assert 0 < b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high
            assert b.volume > 0
            if sym in previous:
                assert b.open == previous[sym]  # each bar opens at the last close
            previous[sym] = b.close


def test_steps_when_a_few_hundred_bars_then_prices_both_trend_and_chop():
    # Arrange: net move over each 45-bar window, relative to the bar-to-bar noise
    feed = SyntheticFeed(("BTCUSDT",), seed=11, start=T0, bar_seconds=60)
    closes = [bars["BTCUSDT"].close for _, bars in feed.steps(900)]

    # Act
    moves = [abs(closes[i + 45] / closes[i] - 1) for i in range(0, 855, 45)]

    # Assert: some windows barely move, some move a lot
    assert min(moves) < 0.01 < max(moves)


def test_steps_when_unknown_symbol_then_still_priced():
    feed = SyntheticFeed(("FOOUSDT",), seed=1, start=0.0, bar_seconds=60)

    (_, bars), = feed.steps(1)

    assert bars["FOOUSDT"].close > 0


# -- parse_ts -------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["2026-01-05T00:00:00Z", "2026-01-05T00:00:00+00:00", "2026-01-05T00:00:00",
                                  "2026-01-05T01:00:00+01:00", "1767571200", "1767571200.0"])
def test_parse_ts_when_iso_or_unix_then_same_instant(text):
    assert parse_ts(text) == T0


@pytest.mark.parametrize("text", ["yesterday", "", "nan", "inf"])
def test_parse_ts_when_not_a_time_then_value_error(text):
    with pytest.raises(ValueError):
        parse_ts(text)


# -- CSV loader -----------------------------------------------------------------------------
def test_load_csv_when_good_file_then_steps_grouped_by_time_in_order(tmp_path):
    # Arrange: rows out of order, ISO and Unix times mixed, a blank line
    path = _csv(tmp_path,
                "2026-01-05T00:01:00Z,BTCUSDT,101,102,100,101.5,3",
                "1767571200,BTCUSDT,100,101,99,101,2",
                "",
                "2026-01-05T00:00:00Z,ETHUSDT,10,11,9,10.5,0")

    # Act
    steps = load_csv(path)

    # Assert
    assert [ts for ts, _ in steps] == [T0, T0 + 60]
    assert sorted(steps[0][1]) == ["BTCUSDT", "ETHUSDT"]
    btc = steps[1][1]["BTCUSDT"]
    assert (btc.open, btc.high, btc.low, btc.close, btc.volume) == (101, 102, 100, 101.5, 3)


def test_load_csv_when_file_starts_with_a_bom_then_header_accepted(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(("\ufeff" + HEADER + "\n1767571200,BTCUSDT,100,101,99,100,1\n").encode("utf-8"))

    steps = load_csv(str(path))

    assert steps[0][1]["BTCUSDT"].close == 100


@pytest.mark.parametrize("row, line, fragment", [
    ("1767571200,BTCUSDT,100,101,99", 3, "expected 7 columns"),
    ("1767571200,BTCUSDT,100,101,99,100,1,extra", 3, "expected 7 columns"),
    ("soon,BTCUSDT,100,101,99,100,1", 3, "ts: expected an ISO-8601 time or Unix seconds"),
    ("1767571260, ,100,101,99,100,1", 3, "symbol: expected a non-empty symbol"),
    ("1767571260,BTCUSDT,abc,101,99,100,1", 3, "open: expected a number, got 'abc'"),
    ("1767571260,BTCUSDT,100,101,99,-100,1", 3, "close: expected a finite positive number"),
    ("1767571260,BTCUSDT,100,101,99,0,1", 3, "close: expected a finite positive number"),
    ("1767571260,BTCUSDT,100,101,99,nan,1", 3, "close: expected a finite positive number"),
    ("1767571260,BTCUSDT,100,101,99,100,-1", 3, "volume: expected a finite positive number"),
    ("1767571260,BTCUSDT,100,101,99,100,1e19", 3, "volume: expected a finite positive number up to 1e+18"),
    ("1767571260,BTCUSDT,1e13,1e13,99,100,1", 3, "open: expected a finite positive number from 1e-12 to 1e+12"),
    ("1767571260,BTCUSDT,100,101,1e-13,100,1", 3, "low: expected a finite positive number from 1e-12 to 1e+12"),
    ("-60,BTCUSDT,100,101,99,100,1", 3, "ts: expected a time from 1970-01-01T00:00:00Z to 9999-12-30T23:59:59Z"),
    ("9999-12-31T00:00:00Z,BTCUSDT,100,101,99,100,1", 3, "ts: expected a time from 1970-01-01T00:00:00Z"),
    ("1767571260,BTCUSDT,100,99,101,100,1", 3, "expected low <= open,close <= high"),
    ("1767571260,BTCUSDT,100,105,99,106,1", 3, "expected low <= open,close <= high"),
    ("1767571200,BTCUSDT,100,101,99,100,1", 3, "duplicate bar for BTCUSDT"),
])
def test_load_csv_when_malformed_row_then_error_names_line(tmp_path, row, line, fragment):
    # Arrange: line 1 is the header, line 2 a good row, the bad row is line 3
    path = _csv(tmp_path, "1767571200,BTCUSDT,100,101,99,100,1", row)

    # Act
    with pytest.raises(DataError) as err:
        load_csv(path)

    # Assert
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert fragment in str(err.value)


def test_load_csv_when_bad_row_after_a_blank_line_then_its_own_line_number(tmp_path):
    path = _csv(tmp_path, "1767571200,BTCUSDT,100,101,99,100,1", "", "", "1767571260,BTCUSDT,x,101,99,100,1")

    with pytest.raises(DataError, match=r":5: open: expected a number"):
        load_csv(path)


def test_load_csv_when_header_wrong_then_error_on_line_1(tmp_path):
    path = _csv(tmp_path, "1767571200,BTCUSDT,100,101,99,100,1", header="time,symbol,o,h,l,c,v")

    with pytest.raises(DataError, match=r":1: expected header ts,symbol,open,high,low,close,volume"):
        load_csv(path)


def test_load_csv_when_only_a_header_then_no_data_rows(tmp_path):
    path = _csv(tmp_path)

    with pytest.raises(DataError, match="no data rows"):
        load_csv(path)


def test_load_csv_when_empty_file_then_error_asks_for_header(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("", encoding="utf-8")

    with pytest.raises(DataError, match="empty file"):
        load_csv(str(path))


def test_load_csv_when_file_missing_then_error_names_file(tmp_path):
    path = str(tmp_path / "nope.csv")

    with pytest.raises(DataError, match=r"nope\.csv: cannot read"):
        load_csv(path)


def test_load_csv_when_not_utf8_then_error_names_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes((HEADER + "\n").encode() + b"1767571200,BTC\xe9USDT,100,101,99,100,1\n")

    with pytest.raises(DataError, match=r":2: unreadable row \(not UTF-8 text\)"):
        load_csv(str(path))


def test_data_error_when_raised_then_is_a_value_error():
    assert issubclass(DataError, ValueError)


def test_load_csv_when_bad_bytes_far_into_the_file_then_error_names_their_line(tmp_path):
    # Arrange: 400 good rows (more than one read buffer), then undecodable bytes on line 402
    rows = [f"{1767571200 + 60 * i},BTCUSDT,100,101,99,100,1" for i in range(400)]
    path = tmp_path / "long.csv"
    path.write_bytes(("\n".join([HEADER] + rows) + "\n").encode() + b"1800000000,\xff\xfe,1,1,1,1,1\n")

    # Act / Assert
    with pytest.raises(DataError, match=r":402: unreadable row \(not UTF-8 text\)"):
        load_csv(str(path))


def test_load_csv_when_symbol_has_a_control_character_then_error_names_line(tmp_path):
    path = tmp_path / "nul.csv"
    path.write_bytes((HEADER + "\n1767571200,BTCUSDT,100,101,99,100,1\n1767571260,BTC\x00,1,1,1,1,1\n").encode())

    with pytest.raises(DataError, match=r":3: symbol: expected a non-empty symbol"):
        load_csv(str(path))


def test_load_csv_when_times_at_the_calendar_edges_then_accepted(tmp_path):
    path = _csv(tmp_path, "0,BTCUSDT,100,101,99,100,1", f"{LATEST_BAR_SECONDS:.0f},BTCUSDT,100,101,99,100,1")

    steps = load_csv(path)

    assert [ts for ts, _ in steps] == [0, LATEST_BAR_SECONDS]


def test_load_csv_when_a_line_is_exactly_the_cap_then_accepted_and_one_more_character_refused(tmp_path):
    # Arrange: a row padded with spaces in the symbol's cell to MAX_LINE_CHARS characters, newline included
    row = "1767571200,BTCUSDT,100,101,99,100,1"
    padded = row.replace("BTCUSDT", "BTCUSDT" + " " * (MAX_LINE_CHARS - len(row) - 1))
    ok = _csv(tmp_path, padded, name="ok.csv")
    too_long = _csv(tmp_path, padded.replace("BTCUSDT", "BTCUSDT "), name="long.csv")

    # Act / Assert
    assert load_csv(ok)[0][1]["BTCUSDT"].close == 100
    with pytest.raises(DataError, match=rf"long\.csv:2: line longer than {MAX_LINE_CHARS} characters"):
        load_csv(too_long)


def test_load_csv_when_a_fifo_then_error_at_once(tmp_path):
    fifo = tmp_path / "bars.csv"
    os.mkfifo(fifo)

    with pytest.raises(DataError, match=r"cannot read \(a FIFO, not a regular file\)"):
        load_csv(str(fifo))


def test_load_csv_when_dev_zero_then_error_before_reading():
    with pytest.raises(DataError, match=r"/dev/zero: cannot read \(a character device, not a regular file\)"):
        load_csv("/dev/zero")
