"""``python -m examples.backtrader``: the bracket strategy on backtrader, instrumented by a table of targets.

Usage::

    python -m examples.backtrader --state-dir DIR                       # healthy
    python -m examples.backtrader --state-dir DIR --fault naked_entry   # entries without stop/take-profit
    python -m examples.backtrader --state-dir DIR --fault order_stall   # orders stop, the strategy runs on
    otel-diag status --state-dir DIR                                    # the same probe as for the shipped engine
    make dashboard STATE_DIR=DIR                                        # the same risk panel

It writes what the shipped executor writes — ``diagnostics.json`` (every publish interval of bar time,
paced like a replay) and ``positions.json`` — plus ``trades.jsonl``, backtrader's order and trade
notifications, which are the same with and without ``--no-instrument``. Telemetry is configured
like the executor's (``OTEL_*`` settings: OTLP, Prometheus, sampling), with
:data:`examples.backtrader.targets.TARGETS` as the table. Bad input is one line and exit 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, Dict, Optional, Sequence

import otel_diag
from examples.backtrader import strategy
from examples.backtrader.run import (
    DEFAULT_BARS,
    DEFAULT_START,
    DEFAULT_SYMBOLS,
    BarClock,
    build_cerebro,
    open_position_rows,
    stop_keys,
)
from execution.atomic import atomic_write_text
from execution.clock import iso
from execution.config import MAX_CYCLES, MAX_SEED, ConfigError, load_config
from execution.diagnostics_document import DIAGNOSTICS_FILE, POSITIONS_FILE
from execution.executor_live import EXIT_BAD_INPUT, EXIT_OK, OneLineArgumentParser, UsageError, check_range
from execution.state_dir import StateDir, StateDirError
from execution.state_publish import REPLAY_MIN_WRITE_SECONDS, DiagnosticsPublisher

PROG = "python -m examples.backtrader"
SERVICE_NAME = "backtrader-example"
TRADES_FILE = "trades.jsonl"
FAULTS = tuple(fault for fault in strategy.FAULTS if fault is not None)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(prog=PROG,
                        description="A bracket-order strategy on backtrader, with otel_diag's runtime diagnostics.")
    p.add_argument("--state-dir", required=True, help="folder for diagnostics.json, positions.json, trades.jsonl")
    p.add_argument("--fault", choices=FAULTS, default=None, help="inject a fault from --fault-at on")
    p.add_argument("--fault-at", type=int, default=100, help="bar index at which the fault starts (default 100)")
    p.add_argument("--bars", type=int, default=DEFAULT_BARS, help=f"one-minute bars to run (default {DEFAULT_BARS})")
    p.add_argument("--seed", type=int, default=7, help="seed of the synthetic bars (default 7)")
    p.add_argument("--config", dest="config_path", default=None,
                   help="strategy config JSON whose diagnostics block sets the thresholds (default: built-in)")
    p.add_argument("--no-instrument", dest="instrument", action="store_false", help="run with no telemetry at all")
    return p


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    for flag, value, low, high in (("--bars", args.bars, 1, MAX_CYCLES), ("--fault-at", args.fault_at, 0, MAX_CYCLES),
                                   ("--seed", args.seed, 0, MAX_SEED)):
        check_range(PROG, flag, value, low, high)
    try:
        os.makedirs(args.state_dir, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{PROG}: --state-dir {args.state_dir}: cannot create ({exc.strerror})") from None
    return args


def positions_state(broker: Any, clock: Callable[[], float]) -> Dict[str, Any]:
    """positions.json: the broker's open positions, each saying whether a live stop order protects it."""
    stops = set(stop_keys(broker))
    return {"written_at": iso(clock()),
            "positions": [{"symbol": symbol, "side": side, "quantity": abs(position.size),
                           "entry_price": position.price, "protected": (symbol, side) in stops}
                          for (symbol, side), _, position in open_position_rows(broker)]}


def run(args: argparse.Namespace, on_publish: Optional[Callable[[dict], None]] = None,
        span_processors: Sequence[Any] = ()) -> Dict[str, Any]:
    """One run: the trades, and how many documents were published."""
    cfg = load_config(args.config_path)
    state = StateDir.acquire(args.state_dir)
    try:
        clock = BarClock(DEFAULT_START)
        publisher: Optional[DiagnosticsPublisher] = None
        if args.instrument:
            otel_diag.configure(clock=clock, service_name=SERVICE_NAME, span_processors=span_processors,
                                targets="examples.backtrader.targets:TARGETS")
            publisher = DiagnosticsPublisher(
                args.state_dir, cfg, clock=clock, on_publish=on_publish, min_write_seconds=REPLAY_MIN_WRITE_SECONDS,
                service={"scenario": args.fault or "healthy", "seed": args.seed, "pace": "replay"},
                symbols=DEFAULT_SYMBOLS)
        cerebro: Optional[Any] = None  # built below; the callbacks run once it runs

        def positions() -> Dict[str, Any]:
            return positions_state(cerebro.getbroker(), clock)

        def on_bar() -> None:
            publisher.maybe_publish(positions)

        cerebro = build_cerebro(seed=args.seed, bars=args.bars, symbols=DEFAULT_SYMBOLS, fault=args.fault,
                                fault_at=args.fault_at, start=DEFAULT_START, bar_seconds=60, clock=clock,
                                on_bar=on_bar if publisher is not None else None)
        try:
            strategy = cerebro.run()[0]
        except Exception as exc:
            if publisher is not None:
                publisher.publish(failure=f"backtrader stopped: {type(exc).__name__}: {exc}")
            raise
        atomic_write_text(os.path.join(args.state_dir, TRADES_FILE),
                          "".join(json.dumps(r, sort_keys=True) + "\n" for r in strategy.records))
        if publisher is not None:
            publisher.publish(final=True, positions=positions)
        return {"records": strategy.records, "publishes": publisher.publishes if publisher else 0,
                "stalled": len(strategy.stalled)}
    finally:
        otel_diag.shutdown()
        state.release()


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args = parse_args(argv)
        outcome = run(args)
    except (UsageError, ConfigError, StateDirError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    records = outcome["records"]
    orders = sum(1 for r in records if r["kind"] == "order" and r["status"] == "Submitted")
    trades = sum(1 for r in records if r["kind"] == "trade")
    print(f"bars: {args.bars}   orders submitted: {orders}   trades closed: {trades}   "
          f"entries stalled: {outcome['stalled']}   fault: {args.fault or 'none'}")
    files = [TRADES_FILE] + ([DIAGNOSTICS_FILE, POSITIONS_FILE] if args.instrument else [])
    print("state: " + ", ".join(os.path.join(args.state_dir, f) for f in files)
          + (f" ({outcome['publishes']} publishes)" if args.instrument else ""))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
