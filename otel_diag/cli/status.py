"""``otel-diag status``: liveness and exit health from diagnostics.json, as a table and an exit code.

Usage::

    otel-diag status --state-dir state            # table; exit 0 healthy
    otel-diag status --state-dir state --json     # the loaded block(s) as JSON
    otel-diag status --max-age 300                # stale after 5 minutes instead of 3 publish intervals

Exit codes: 0 healthy; 1 any idle flag, a stale symbol or a ledger/registry mismatch; 2 state missing,
unreadable, invalid or stale, or the executor stopped or failed (one line on stderr saying which:
``stopped at <time> — last verdict healthy``). A state dir holding one subfolder per executor is
checked as a whole: the worst executor decides the exit code, and ``--json`` prints
``{"instances": {name: block}}``; each block carries the verdict as ``health``. Usable as a
liveness probe or a cron check.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Dict, List, Mapping, Tuple

from execution.diagnostics_document import (
    EXIT_ALERTING,
    EXIT_HEALTHY,
    LIVENESS_KEYS,
    MAX_AGE_LIMIT_SECONDS,
    STATUS_OK,
    VERDICT_ALERTING,
    VERDICT_FAILED,
    VERDICT_HEALTHY,
    VERDICT_STOPPED,
    format_age,
    health,
    idle_keys,
    NOT_CHECKED,
    fresh_symbols_text,
    more_stale_text,
    shown_stale_symbols,
    symbol_limit_text,
)
from execution.state_v7 import list_executor_instances, load_runtime_diagnostics_state


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", default="state", metavar="DIR",
                        help="the executor's state folder, or a folder of per-executor subfolders (default state)")
    parser.add_argument("--json", action="store_true", help="print the loaded diagnostics block as JSON")
    parser.add_argument("--max-age", type=_seconds, default=None, metavar="SECONDS",
                        help="stale when diagnostics.json is older than this (default 3 publish intervals; "
                             f"at most {MAX_AGE_LIMIT_SECONDS:g})")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 < value <= MAX_AGE_LIMIT_SECONDS:
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds > 0 and at most {MAX_AGE_LIMIT_SECONDS:g}, got {text[:40]!r}")
    return value


def with_health(block: Dict[str, Any]) -> Dict[str, Any]:
    """The block as ``--json`` prints it: the loaded block plus its verdict."""
    verdict = health(block)
    return {**block, "health": {"code": verdict.code, "verdict": verdict.label, "alerts": list(verdict.alerts),
                                "summary": verdict.summary}}


def run(args: argparse.Namespace) -> int:
    loaded: List[Tuple[str, Dict[str, Any]]] = [
        (i.name, load_runtime_diagnostics_state(i.state_dir, max_age_seconds=args.max_age))
        for i in list_executor_instances(args.state_dir)
    ]
    if args.json:
        blocks = [(name, with_health(block)) for name, block in loaded]
        payload: Any = blocks[0][1] if len(blocks) == 1 else {"instances": dict(blocks)}
        print(json.dumps(payload, indent=2, sort_keys=False, allow_nan=False))
    else:
        _print_tables(loaded)
    verdicts = [health(block) for _, block in loaded]
    for (name, block), verdict in zip(loaded, verdicts):
        prefix = f"otel-diag status: {name}: " if len(loaded) > 1 else "otel-diag status: "
        if verdict.summary:
            print(_plain(f"{prefix}{verdict.summary}"), file=sys.stderr)
        elif verdict.code == EXIT_ALERTING:
            print(_plain(f"{prefix}alerting: {', '.join(verdict.alerts)}"), file=sys.stderr)
        elif verdict.code != EXIT_HEALTHY:
            print(_plain(f"{prefix}{block['status']}: {block['reason']}"), file=sys.stderr)
    return max(v.code for v in verdicts)


def _plain(text: str) -> str:
    """One printable line: control characters from a hostile file never reach the terminal."""
    return "".join(c if c.isprintable() else "?" for c in text)


# -- the readable table -----------------------------------------------------------------------
_OK, _BAD, _WARN, _NONE = "[green]OK[/green]", "[bold red]IDLE[/bold red]", "[yellow]WARN[/yellow]", "[dim]-[/dim]"
_STALE, _MARKET_DATA = "[bold red]STALE[/bold red]", "market data"
_BADGES = {VERDICT_HEALTHY: "[bold green]HEALTHY[/bold green]", VERDICT_ALERTING: "[bold red]ALERTING[/bold red]",
           VERDICT_STOPPED: "[bold magenta]STOPPED[/bold magenta]", VERDICT_FAILED: "[bold red]FAILED[/bold red]"}


def _liveness_rows(block: Mapping[str, Any]) -> List[Tuple[str, str, str, str]]:
    live = block["runtime_diagnostics"]["liveness"]
    idle = idle_keys(live)
    rows = []
    for key in LIVENESS_KEYS:
        detail, limit = live["details"].get(key), live["thresholds"].get(key)
        if live["missing"].get(key) is True:
            state, text = _BAD, "never seen (missing)"
        elif key in idle:
            state, text = _BAD, f"idle for {format_age(detail)}"
        elif key not in live["details"] and limit is None:
            state, text = _NONE, "not checked"
        else:
            state, text = _OK, f"idle for {format_age(detail)}"
        rows.append((key, state, text, format_age(limit) if limit else "-"))
    return rows


def _market_data_rows(block: Mapping[str, Any]) -> List[Tuple[str, str, str, str]]:
    """One "market data" row per stale symbol the verdict names (then "and N more"), or one saying all are fresh
    or not checked; the limit is the failed check's (else every check's)."""
    from rich.markup import escape

    live = block["runtime_diagnostics"]["liveness"]
    shown, more = shown_stale_symbols(live)
    if not shown:
        text = fresh_symbols_text(live)
        return [(_MARKET_DATA, _NONE, text, "-")] if text == NOT_CHECKED else \
            [(_MARKET_DATA, _OK, text, symbol_limit_text(live))]
    rows = [(_MARKET_DATA, _STALE, escape(_plain(text)), symbol_limit_text(live, check)) for _, check, text in shown]
    if more:
        rows.append((_MARKET_DATA, _STALE, more_stale_text(more), ""))
    return rows


def _exit_rows(block: Mapping[str, Any]) -> List[Tuple[str, str, str, str]]:
    from rich.markup import escape

    ex = block["runtime_diagnostics"]["exit_pipeline"]
    open_n, under = ex["open_positions_count"], ex["underwater_without_tp_sl_count"]
    covered = ex["tp_sl_coverage_pct"] >= 1 and not ex["ledger_registry_mismatch"]
    missing = ", ".join(escape(_plain(s)) for s in ex["missing_tp_sl_symbols"][:8])
    under_symbols = ", ".join(escape(_plain(s)) for s in ex["underwater_without_tp_sl_symbols"][:8])
    return [
        ("open positions", _NONE, str(open_n), ""),
        ("TP/SL coverage", _NONE if open_n == 0 else _OK if covered else "[bold red]LOW[/bold red]",
         "-, no open positions" if open_n == 0
         else f"{ex['tp_sl_coverage_pct']:.0%} ({ex['tp_sl_registered_count']} of {open_n})", ""),
        ("ledger vs registry", "[bold red]MISMATCH[/bold red]" if ex["ledger_registry_mismatch"] else _OK,
         f"{ex['tp_sl_missing_count']} open without TP/SL" + (f": {missing}" if missing else ""), ""),
        ("underwater, no TP/SL", "[bold red]BAD[/bold red]" if under else _OK,
         str(under) + (f": {under_symbols}" if under and under_symbols else ""), ""),
        ("orphaned TP/SL", _WARN if ex["tp_sl_orphan_count"] else _OK, str(ex["tp_sl_orphan_count"]), ""),
    ]


def _print_tables(loaded: List[Tuple[str, Dict[str, Any]]]) -> None:
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(file=sys.stdout, highlight=False)
    for name, block in loaded:
        verdict = health(block)
        badge = _BADGES.get(verdict.label, f"[bold yellow]UNKNOWN ({escape(block['status'])})[/bold yellow]")
        service = _plain(str(block["service"].get("name")))
        console.print(f"[bold]{escape(_plain(name))}[/bold] ({escape(service)}): {badge}")
        console.print(f"  {escape(_plain(block['reason']))}", soft_wrap=True)
        if verdict.summary:
            console.print(f"  {escape(_plain(verdict.summary))}", soft_wrap=True)
        live = verdict.code in (EXIT_HEALTHY, EXIT_ALERTING)
        has_figures = block["status"] == STATUS_OK or block["written_at"] is not None
        if not live and not has_figures:
            console.print()
            continue
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, header_style="bold")
        for column in ("check", "state", "value", "limit"):
            table.add_column(column)
        liveness, exits = _liveness_rows(block) + _market_data_rows(block), _exit_rows(block)
        for index, row in enumerate(liveness + exits):
            if not live:  # figures from an untrusted file or an ended run: shown, never as OK
                row = (row[0], "[dim]?[/dim]", f"[dim]last known: {row[2]}[/dim]", row[3])
            table.add_row(*row, end_section=index == len(liveness) - 1)
        console.print(table)
        console.print()
