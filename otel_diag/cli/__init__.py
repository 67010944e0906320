"""``otel-diag`` (also ``python -m otel_diag``): probe the state files and generate alert rules.

Usage::

    otel-diag status --state-dir state          # exit 0 healthy, 1 idle/mismatch, 2 missing/unreadable/stale
    otel-diag status --json
    otel-diag rules --config config/strategy_config.json > liveness_rules.yml

Each subcommand lives in its own module of this package (``otel_diag.cli.status``,
``otel_diag.cli.rules``) exposing ``add_arguments(parser)`` and ``run(args) -> int``;
bad input is one line on stderr and exit 2. These are product tools: the
instrumentation core (``otel_diag`` outside ``otel_diag.cli``) never imports them.
"""
from __future__ import annotations

import argparse
import sys
from types import ModuleType
from typing import Dict, Optional, Sequence, Tuple

from otel_diag.cli import rules, status

SUBCOMMANDS: Dict[str, Tuple[ModuleType, str]] = {
    "status": (status, "print liveness and exit health from diagnostics.json"),
    "rules": (rules, "print Prometheus alerting rules derived from the liveness thresholds"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _Parser(prog="otel-diag", description="Runtime diagnostics of the execution engine.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (module, help_text) in SUBCOMMANDS.items():
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    module, _ = SUBCOMMANDS[args.command]
    return int(module.run(args))

