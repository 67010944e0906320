"""Market data: a seeded synthetic 1-minute OHLCV generator, and a strict CSV loader.

Usage::

    feed = SyntheticFeed(symbols=("BTCUSDT", "ETHUSDT"), seed=7, start=0.0, bar_seconds=60)
    for ts, bars in feed.steps(100):      # bars: {symbol: Bar}
        ...
    steps = load_csv("bars.csv")           # raises DataError naming the line

The loader reads regular files only (a FIFO or ``/dev/zero`` is refused before a byte is read),
lines of at most ``MAX_LINE_CHARS``, times on the engine's calendar and prices and volumes in
the ranges below, so whatever the file holds, memory stays bounded and the run can stamp every bar.
"""
from __future__ import annotations

import csv
import io
import math
import random
import re
from typing import Dict, Iterator, List, Sequence, Tuple

from execution.clock import EARLIEST_SECONDS, LATEST_SECONDS, iso_seconds, iso_z, on_calendar
from execution.config import MAX_BAR_SECONDS, open_regular_file, shown_path
from execution.diagnostics_document import describe
from execution.models import Bar

Step = Tuple[float, Dict[str, Bar]]

CSV_COLUMNS = ("ts", "symbol", "open", "high", "low", "close", "volume")

MAX_LINE_CHARS = 4096          # a row needs ~80; a longer line (or /dev/zero-like data) is refused as read
LATEST_BAR_SECONDS = LATEST_SECONDS - MAX_BAR_SECONDS   # 9999-12-30T23:59:59Z: the last bar closes on the calendar
MIN_PRICE, MAX_PRICE = 1e-12, 1e12   # sizing divides by the price; every product stays finite
MAX_VOLUME = 1e18

_BASE_PRICES = {
    "BTCUSDT": 64_000.0, "ETHUSDT": 3_200.0, "SOLUSDT": 150.0, "BNBUSDT": 580.0,
    "XRPUSDT": 0.52, "ADAUSDT": 0.45, "DOGEUSDT": 0.12, "AVAXUSDT": 35.0,
}


class DataError(ValueError):
    """Bad market data: the message names the file, the line and what was wrong."""


class SyntheticFeed:
    """Deterministic random-walk bars per symbol with trend and chop regimes.

    Each symbol has a base volatility; a regime scales it (chop is calm, trends are
    livelier, a burst is wild) and adds a drift, and lasts ~45 bars on average. So
    sizes vary over time and every risk check gets something to say.
    """

    REGIMES = ("chop", "trend_up", "trend_down", "burst")
    # regime -> (volatility multiplier, drift in units of volatility per bar)
    _REGIME_SHAPE = {"chop": (0.8, 0.0), "trend_up": (1.1, 0.3), "trend_down": (1.1, -0.3), "burst": (1.9, 0.0)}
    _REGIME_WEIGHTS = (4, 3, 3, 1)

    def __init__(self, symbols: Sequence[str], seed: int, start: float, bar_seconds: int) -> None:
        self.symbols = tuple(symbols)
        self.bar_seconds = bar_seconds
        self.start = start
        self._rng = random.Random(seed)
        self._price = {}
        self._vol = {}
        self._regime = {}
        for i, sym in enumerate(self.symbols):
            self._price[sym] = _BASE_PRICES.get(sym, 10.0 * (i + 1))
            self._vol[sym] = self._rng.uniform(0.0012, 0.0024)
            self._regime[sym] = self._pick_regime()

    def _pick_regime(self) -> str:
        return self._rng.choices(self.REGIMES, weights=self._REGIME_WEIGHTS)[0]

    def _next_bar(self, sym: str, ts: float) -> Bar:
        rng = self._rng
        if rng.random() < 1 / 45:
            self._regime[sym] = self._pick_regime()
        scale, drift_per_vol = self._REGIME_SHAPE[self._regime[sym]]
        vol = self._vol[sym] * scale
        drift = drift_per_vol * vol
        o = self._price[sym]
        c = o * math.exp(drift + rng.gauss(0.0, vol))
        h = max(o, c) * (1 + abs(rng.gauss(0.0, vol * 0.6)))
        lo = min(o, c) * (1 - abs(rng.gauss(0.0, vol * 0.6)))
        self._price[sym] = c
        return Bar(ts=ts, symbol=sym, open=o, high=h, low=lo, close=c, volume=round(rng.uniform(5, 50), 3))

    def steps(self, count: int) -> Iterator[Step]:
        """Yield ``count`` bars per symbol, in time order."""
        for i in range(count):
            ts = self.start + i * self.bar_seconds
            yield ts, {sym: self._next_bar(sym, ts) for sym in self.symbols}


def parse_ts(text: str) -> float:
    """An ISO-8601 time (naive = UTC, ``Z`` allowed) or Unix seconds, as Unix seconds."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        return iso_seconds(text)
    if not math.isfinite(value):
        raise ValueError("not a finite time")
    return value


def load_csv(path: str) -> List[Step]:
    """Read OHLCV rows ``ts,symbol,open,high,low,close,volume`` into time-ordered steps."""
    where = shown_path(path)
    try:
        raw = open_regular_file(path)
    except OSError as exc:
        raise DataError(f"{where}: cannot read ({exc.strerror})") from None
    # utf-8-sig tolerates a spreadsheet's BOM; undecodable bytes are kept as surrogates
    # and reported with their line number (a decode error would name the buffer, not the line)
    fh = io.TextIOWrapper(raw, newline="", encoding="utf-8-sig", errors="surrogateescape")
    by_ts: Dict[float, Dict[str, Bar]] = {}
    with fh:
        reader = csv.reader(_capped_lines(fh, where))
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise DataError(f"{where}:1: unreadable header ({exc})") from None
        if header is None:
            raise DataError(f"{where}: empty file, expected a header {','.join(CSV_COLUMNS)}")
        _check_text(header, where, 1)
        if tuple(h.strip().lower() for h in header) != CSV_COLUMNS:
            raise DataError(f"{where}:1: expected header {','.join(CSV_COLUMNS)}, got {describe(','.join(header))}")
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise DataError(f"{where}:{reader.line_num}: unreadable row ({exc})") from None
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            _check_text(row, where, line)
            bar = _parse_row(row, where, line)
            bars = by_ts.setdefault(bar.ts, {})
            if bar.symbol in bars:
                raise DataError(f"{where}:{line}: duplicate bar for {bar.symbol} at {describe(row[0])}")
            bars[bar.symbol] = bar
    if not by_ts:
        raise DataError(f"{where}: no data rows")
    return [(ts, by_ts[ts]) for ts in sorted(by_ts)]


def _capped_lines(fh: io.TextIOBase, path: str) -> Iterator[str]:
    """The file's lines, each read with a cap: an endless line fails at MAX_LINE_CHARS, not at out-of-memory."""
    number = 0
    while True:
        line = fh.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_CHARS:
            raise DataError(f"{path}:{number}: line longer than {MAX_LINE_CHARS} characters")
        yield line


_UNDECODABLE = re.compile("[\udc80-\udcff]")


def _check_text(row: List[str], path: str, line: int) -> None:
    if any(_UNDECODABLE.search(cell) for cell in row):
        raise DataError(f"{path}:{line}: unreadable row (not UTF-8 text)")


def _parse_row(row: List[str], path: str, line: int) -> Bar:
    if len(row) != len(CSV_COLUMNS):
        raise DataError(f"{path}:{line}: expected {len(CSV_COLUMNS)} columns ({','.join(CSV_COLUMNS)}), got {len(row)}")
    try:
        ts = parse_ts(row[0])
    except ValueError:
        raise DataError(f"{path}:{line}: ts: expected an ISO-8601 time or Unix seconds, got {describe(row[0])}") from None
    if not on_calendar(ts, LATEST_BAR_SECONDS):
        raise DataError(f"{path}:{line}: ts: expected a time from {iso_z(EARLIEST_SECONDS)} to "
                        f"{iso_z(LATEST_BAR_SECONDS)}, got {describe(row[0])}")
    symbol = row[1].strip()
    if not symbol or not symbol.isprintable() or any(c.isspace() for c in symbol):
        raise DataError(f"{path}:{line}: symbol: expected a non-empty symbol without spaces, got {describe(row[1])}")
    values = []
    for name, text in zip(CSV_COLUMNS[2:], row[2:]):
        try:
            v = float(text)
        except ValueError:
            raise DataError(f"{path}:{line}: {name}: expected a number, got {describe(text)}") from None
        if name == "volume":
            if not 0 <= v <= MAX_VOLUME:
                raise DataError(f"{path}:{line}: volume: expected a finite positive number up to {MAX_VOLUME:.0e}"
                                f" (0 allowed), got {describe(text)}")
        elif not MIN_PRICE <= v <= MAX_PRICE:
            raise DataError(f"{path}:{line}: {name}: expected a finite positive number from {MIN_PRICE:.0e} to "
                            f"{MAX_PRICE:.0e}, got {describe(text)}")
        values.append(v)
    o, h, lo, c, vol = values
    if h < max(o, c, lo) or lo > min(o, c):
        raise DataError(f"{path}:{line}: expected low <= open,close <= high, got o={o} h={h} l={lo} c={c}")
    return Bar(ts=ts, symbol=symbol, open=o, high=h, low=lo, close=c, volume=vol)
