"""The executor's entry point: ``python -m execution`` / ``executor``.

Usage::

    executor --cycles 300 --scenario router_stall --fault-at 100 --state-dir state
    executor --data bars.csv --no-instrument        # no telemetry at all, for A/B runs

Runs the paper engine bar by bar, writes ``journal.jsonl`` and ``positions.json``,
and — unless ``--no-instrument`` — calls ``otel_diag.configure()`` once at start-up
and publishes ``diagnostics.json`` every ``diagnostics.publish_interval_seconds``
of engine time (in replay pace the file is rewritten at most every
``REPLAY_MIN_WRITE_SECONDS`` of wall time, execution/state_publish.py;
docs/state_files.md) and at shutdown. SIGINT/SIGTERM finish the current cycle, write state and exit 0.

One executor per state dir (``executor.lock``); a restart moves the last run's non-empty
``journal.jsonl`` aside as ``journal.<UTC start>.jsonl`` (docs/state_files.md).

Exit codes: 0 the run ended (or was stopped by a signal); 2 bad input, or a state dir that cannot
be used (another executor holds it, an entry is a link, FIFO, device or folder) — one line on
stderr, the last run's journal untouched; 3 the journal could not be written (disk full, I/O
error) — trading stopped, one line on stderr, the journal ends on a complete record and
``diagnostics.json`` says ``"state": "failed"`` with the reason.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

from execution.clock import SimClock, wall_clock
from execution.config import (DEFAULT_CONFIG_PATH, MAX_BAR_SECONDS, MAX_CYCLES, MAX_PATH_BYTES, MAX_SEED, AppConfig,
                              ConfigError, load_config)
from execution.engine import CycleResult, Executor, RunStats
from execution.diagnostics_document import DIAGNOSTICS_FILE, JOURNAL_FILE, POSITIONS_FILE, describe, shorten
from execution.journal import FSYNC_POLICIES, FSYNC_PUBLISH, Journal, JournalError
from execution.market_data import DataError, SyntheticFeed, load_csv
from execution.scenarios import SCENARIOS, Scenario
from execution.state_dir import HEADROOM_BYTES, StateDir, StateDirError

DEFAULT_CYCLES = 480
EXIT_OK, EXIT_BAD_INPUT, EXIT_JOURNAL_FAILED = 0, 2, 3


class UsageError(Exception):
    """Bad command-line input: one line for the user, exit 2."""


@dataclass
class RunOptions:
    config_path: Optional[str] = None
    state_dir: str = "state"
    cycles: Optional[int] = None
    seed: int = 7
    scenario: str = "healthy"
    fault_at: int = 100
    fault_symbol: Optional[str] = None  # the symbol of symbol_freeze / symbol_stale_price (default the second one)
    pace: str = "replay"
    bar_interval: Optional[float] = None
    data: Optional[str] = None
    instrument: bool = True
    progress: bool = False
    journal_fsync: str = FSYNC_PUBLISH  # when the journal is fsynced: publish | always | never
    # replay pace: the state files are rewritten at most this often, in wall seconds (None: the publisher's
    # REPLAY_MIN_WRITE_SECONDS; 0: at every publish interval of engine time). Realtime pace writes at every one.
    replay_min_write_seconds: Optional[float] = None


@dataclass
class RunSummary:
    stats: RunStats
    cycles: int
    realized_pnl: float
    unrealized_pnl: float
    fills: int
    rejects: int
    state_dir: str
    interrupted: bool = False
    publishes: int = 0  # writes of diagnostics.json
    publish_ticks: int = 0  # publish intervals of engine time reached (each one's document went to on_publish)
    rotated_journal: Optional[str] = None  # where the last run's journal was moved, if there was one


@dataclass
class RunHooks:
    """Extra telemetry sinks and callbacks, for tests and embedding."""

    span_processors: Sequence = ()
    metric_readers: Sequence = ()
    on_cycle: Optional[Callable[[CycleResult], None]] = None
    on_publish: Optional[Callable[[dict], None]] = None
    configure_kwargs: dict = field(default_factory=dict)
    # the wall clock the state files are stamped (written_at) and, in a replay, paced with (default time.time)
    wall_clock: Optional[Callable[[], float]] = None


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are :class:`UsageError`: one short line (a huge bad value cut as describe() does)."""

    def error(self, message: str) -> None:
        raise UsageError(" ".join(shorten(w) for w in f"{self.prog}: {message}".split(" ")))


def build_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(prog="executor", description="Paper-trading execution engine with runtime diagnostics.")
    p.add_argument("--config", dest="config_path", default=None, help=f"strategy config JSON (default {DEFAULT_CONFIG_PATH}, built-in defaults when absent)")
    p.add_argument("--state-dir", default="state", help="folder for journal.jsonl, positions.json, diagnostics.json (default state)")
    p.add_argument("--cycles", type=int, default=None, help=f"bars to process (default {DEFAULT_CYCLES}, or all rows of --data)")
    p.add_argument("--seed", type=int, default=7, help="seed of the synthetic market and the venue (default 7)")
    p.add_argument("--scenario", default="healthy", choices=SCENARIOS, help="fault scenario (default healthy)")
    p.add_argument("--fault-at", type=int, default=100, help="bar index at which the scenario's fault starts (default 100)")
    p.add_argument("--fault-symbol", default=None, metavar="SYMBOL",
                   help="the symbol symbol_freeze and symbol_stale_price hit (default the second configured symbol)")
    p.add_argument("--pace", default="replay", choices=("replay", "realtime"), help="replay: simulated bar clock; realtime: wall clock")
    p.add_argument("--bar-interval", type=float, default=None, help="realtime pace: wall seconds between bars (default the bar length)")
    p.add_argument("--data", default=None, help="OHLCV CSV (ts,symbol,open,high,low,close,volume) instead of the synthetic feed")
    p.add_argument("--no-instrument", dest="instrument", action="store_false", help="run with no telemetry at all")
    p.add_argument("--journal-fsync", default=FSYNC_PUBLISH, choices=FSYNC_POLICIES,
                   help="when journal.jsonl is fsynced: publish (before every state-file write; default), "
                        "always (every record), never (left to the OS)")
    return p


def check_range(prog: str, flag: str, value: int, low: int, high: int, unit: str = "") -> None:
    """UsageError unless ``low <= value <= high``: ``prog: flag: expected an integer >= low and <= high, got …``."""
    if not low <= value <= high:
        raise UsageError(f"{prog}: {flag}: expected an integer >= {low} and <= {high}{unit}, got {describe(value)}")


def parse_options(argv: Optional[Sequence[str]]) -> RunOptions:
    """The run's options, each in the range the engine computes with; UsageError (one short line) otherwise."""
    opts = RunOptions(**vars(build_parser().parse_args(argv)))
    if opts.cycles is not None:
        check_range("executor", "--cycles", opts.cycles, 1, MAX_CYCLES)
    check_range("executor", "--fault-at", opts.fault_at, 0, MAX_CYCLES)
    check_range("executor", "--seed", opts.seed, 0, MAX_SEED, " (64 bits)")
    if opts.bar_interval is not None and not 0 < opts.bar_interval <= MAX_BAR_SECONDS:
        raise UsageError(f"executor: --bar-interval: expected a finite number of seconds > 0 and <= {MAX_BAR_SECONDS}, "
                         f"got {opts.bar_interval}")
    for flag, path in (("--config", opts.config_path), ("--state-dir", opts.state_dir), ("--data", opts.data)):
        if path is not None and len(os.fsencode(path)) >= MAX_PATH_BYTES:
            raise UsageError(f"executor: {flag}: expected a path shorter than {MAX_PATH_BYTES} bytes, got {describe(path)}")
    return opts


def _load_config(path: Optional[str]) -> AppConfig:
    if path is None:
        return load_config(DEFAULT_CONFIG_PATH if os.path.exists(DEFAULT_CONFIG_PATH) else None)
    return load_config(path)


class _StopFlag:
    """Set by SIGINT/SIGTERM; the loop finishes the current cycle, then stops.

    The handler only flips a bool: taking a lock there (``Event.set``) can deadlock when
    the signal lands while the main thread holds that lock inside ``Event.wait``.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def is_set(self) -> bool:
        return self.requested

    def wait(self, timeout: float) -> bool:
        """Nap up to ``timeout`` seconds in short slices; True as soon as a stop was requested."""
        deadline = time.monotonic() + timeout
        while not self.requested:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, 0.05))
        return True

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def run(opts: RunOptions, hooks: Optional[RunHooks] = None) -> RunSummary:
    """Run the engine per ``opts``.

    Raises ConfigError, DataError, UsageError or StateDirError on bad input, before the last run's
    journal is touched; JournalError when the journal could not be written mid-run (trading stopped,
    the journal ends on a complete record, positions.json and a "failed" diagnostics.json written).
    """
    hooks = hooks or RunHooks()
    if opts.journal_fsync not in FSYNC_POLICIES:
        raise UsageError(f"executor: --journal-fsync: expected one of {', '.join(FSYNC_POLICIES)}, "
                         f"got {opts.journal_fsync!r}")
    cfg = _load_config(opts.config_path)
    steps = load_csv(opts.data) if opts.data else None
    scenario = Scenario(opts.scenario, opts.fault_at, opts.fault_symbol)
    try:
        fault_symbol = scenario.fault_symbol(cfg.strategy.symbols)
    except ValueError as exc:
        raise UsageError(f"executor: --fault-symbol: {exc}") from None
    try:
        os.makedirs(opts.state_dir, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"executor: --state-dir {opts.state_dir}: cannot create ({exc.strerror})") from None
    cycles = opts.cycles or (len(steps) if steps is not None else DEFAULT_CYCLES)
    bar_seconds = cfg.market_data.bar_seconds
    start = steps[0][0] if steps else cfg.market_data.start_epoch
    realtime = opts.pace == "realtime"
    clock = wall_clock if realtime else SimClock(start)
    state = StateDir.acquire(opts.state_dir)  # one executor per state dir, from here to state.release()

    telemetry = publisher = journal = None
    try:
        if opts.instrument:
            import otel_diag

            telemetry = otel_diag.configure(**{
                "clock": clock, "service_name": cfg.telemetry.service_name,
                "deployment_environment": cfg.telemetry.deployment_environment,
                "prometheus_port": cfg.telemetry.prometheus_port, "prometheus_host": cfg.telemetry.prometheus_host,
                "targets": cfg.telemetry.targets, "span_processors": hooks.span_processors,
                "metric_readers": hooks.metric_readers, **hooks.configure_kwargs})
        # Everything that can fail on bad input has passed: only now is the last run's journal moved aside.
        state.rotate_journal()
        try:
            journal = Journal(state.path(JOURNAL_FILE), fsync=opts.journal_fsync, keep_free_bytes=HEADROOM_BYTES)
        except OSError as exc:
            raise UsageError(f"executor: --state-dir {opts.state_dir}: cannot write {JOURNAL_FILE} ({exc.strerror})") from None
        if telemetry is not None and cfg.diagnostics.enabled and telemetry.enabled:
            from execution.state_publish import REPLAY_MIN_WRITE_SECONDS, DiagnosticsPublisher

            min_write = 0.0 if realtime else (REPLAY_MIN_WRITE_SECONDS if opts.replay_min_write_seconds is None
                                              else opts.replay_min_write_seconds)
            publisher = DiagnosticsPublisher(opts.state_dir, cfg, clock=clock, on_publish=hooks.on_publish,
                                             service={"scenario": scenario.name, "pace": opts.pace, "seed": opts.seed,
                                                      "fault_symbol": fault_symbol if scenario.per_symbol else None},
                                             telemetry=telemetry, before_write=journal.sync, min_write_seconds=min_write,
                                             wall_clock=hooks.wall_clock or wall_clock)
        source = iter(steps[:cycles]) if steps is not None else \
            SyntheticFeed(cfg.strategy.symbols, opts.seed, start, bar_seconds).steps(cycles)
        engine = Executor(cfg, clock=clock, seed=opts.seed, scenario=scenario, journal=journal)
    except BaseException:  # nothing traded: release what was taken, in reverse
        if journal is not None:
            with contextlib.suppress(JournalError):  # the error on its way out is the one to tell
                journal.close()
        if telemetry is not None:
            import otel_diag

            otel_diag.shutdown()
        state.release()
        raise

    interval = opts.bar_interval if opts.bar_interval is not None else float(bar_seconds)
    progress = _Progress(cycles, enabled=opts.progress)
    done = 0
    failure: Optional[JournalError] = None
    reason: Optional[str] = None  # why the run failed, one line; None when it ended or was stopped
    stop = _StopFlag()
    stop.install()
    try:
        try:
            next_tick = time.monotonic()
            for index, (ts, bars) in enumerate(source):
                if realtime:
                    ts = clock()
                else:
                    clock.set(ts + bar_seconds)
                result = engine.run_cycle(index, ts, bars)
                journal.flush()  # the cycle's records reach the OS whole; fsync per policy, before each publish
                done += 1
                if hooks.on_cycle is not None:
                    hooks.on_cycle(result)
                if publisher is not None:
                    publisher.maybe_publish(engine.positions_state)
                progress.advance(done)
                if stop.is_set():
                    break
                if realtime and done < cycles:
                    next_tick += interval
                    if stop.wait(max(0.0, next_tick - time.monotonic())):
                        break
        finally:
            journal.close()
    except JournalError as exc:  # trading stops here; the state below says why
        failure = exc
        reason = exc.reason
    except Exception as exc:  # a bug: the last document says the run failed, then it surfaces
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
        raise
    finally:
        stop.restore()
        progress.close()
        if failure is not None:
            state.release_reserve()  # on a full disk, the room for the writes below
        from execution.atomic import atomic_write_json

        positions_path = state.path(POSITIONS_FILE)
        try:
            atomic_write_json(positions_path, engine.positions_state())
        except OSError as exc:  # the trades are in the journal; a failing disk must not skip the shutdown below
            print(f"warning: could not write {positions_path}: {exc}", file=sys.stderr)
        if publisher is not None:
            publisher.publish(final=True, failure=reason)
            publisher.close()
        if telemetry is not None:
            import otel_diag

            otel_diag.shutdown()
        state.release()
    if failure is not None:
        raise failure
    return RunSummary(stats=engine.stats, cycles=done, realized_pnl=engine.ledger.realized_pnl,
                      unrealized_pnl=engine.ledger.unrealized_pnl(), fills=journal.fills, rejects=journal.rejects,
                      state_dir=opts.state_dir, interrupted=stop.is_set(),
                      publishes=publisher.publishes if publisher is not None else 0,
                      publish_ticks=publisher.ticks if publisher is not None else 0,
                      rotated_journal=state.rotated_journal)


class _Progress:
    """A rich progress bar on a terminal; nothing when not a TTY."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar = None
        if enabled:
            from rich.progress import Progress

            self._bar = Progress(transient=True)
            self._bar.start()
            self._task = self._bar.add_task("bars", total=total)

    def advance(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def format_summary(s: RunSummary) -> List[str]:
    st = s.stats
    vetoes = ", ".join(f"{k}={v}" for k, v in sorted(st.vetoes.items())) or "none"
    lines = [
        f"bars: {s.cycles}   signals: {st.signals}   approved: {st.approved}   vetoes: {sum(st.vetoes.values())} ({vetoes})",
        f"orders routed: {st.orders_routed}   not routed: {st.orders_stuck}   fills: {s.fills}   rejects: {s.rejects}",
        f"exit scans: {st.exit_scans}   exit triggers: {st.exit_triggers}   TP/SL registered: {st.tp_sl_registered}   dropped: {st.tp_sl_dropped}",
        f"PnL realized: {s.realized_pnl:.2f} USDT   unrealized: {s.unrealized_pnl:.2f} USDT",
        f"state: {os.path.join(s.state_dir, JOURNAL_FILE)}, {os.path.join(s.state_dir, POSITIONS_FILE)}"
        + (f", {os.path.join(s.state_dir, DIAGNOSTICS_FILE)} ({s.publishes} publishes)" if s.publishes else ""),
    ]
    if s.rotated_journal:
        lines.insert(-1, f"previous journal kept as {s.rotated_journal}")
    if s.interrupted:
        lines.insert(0, "interrupted: finished the current cycle and wrote state")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        opts = parse_options(argv)
        opts.progress = sys.stderr.isatty()
        summary = run(opts)
    except (ConfigError, DataError, UsageError, StateDirError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except JournalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_JOURNAL_FAILED
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    for line in format_summary(summary):
        print(line)
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
