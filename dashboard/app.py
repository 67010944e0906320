"""The risk panel: a Streamlit page over the executor's state files.

Usage::

    streamlit run dashboard/app.py --server.address 127.0.0.1 -- --state-dir state --refresh-seconds 5

Options (after ``--``), each with an environment variable as fallback:

- ``--state-dir DIR`` (``OTEL_DIAG_STATE_DIR``, default ``state``): one executor's state folder,
  or a folder holding one subfolder per executor (shown side by side);
- ``--refresh-seconds N`` (``OTEL_DIAG_REFRESH_SECONDS``, default 5): reload interval;
- ``--jaeger-ui-url URL`` (``JAEGER_UI_URL``): link each liveness key's last trace in Jaeger;
  without it the file's ``service.jaeger_ui_url`` is used when set.

The page reads only the state files, through ``execution.state_v7``.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import streamlit as st

try:
    from dashboard import risk_panel
except ImportError:  # run from a checkout that is not installed: make the project root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from dashboard import risk_panel
from execution.state_v7 import list_executor_instances, load_runtime_diagnostics_state
from otel_diag.redact import url_without_credentials

DEFAULT_REFRESH_SECONDS = 5.0
MIN_REFRESH_SECONDS = 1.0
MAX_COLUMNS = 3


@dataclass(frozen=True)
class Options:
    state_dir: str
    refresh_seconds: float
    jaeger_ui_url: Optional[str]
    warnings: Tuple[str, ...] = ()


def parse_options(argv: Sequence[str], environ: Optional[dict] = None) -> Options:
    """Options from the command line after ``--``, then the environment, then defaults; never exits."""
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="dashboard/app.py", add_help=False, allow_abbrev=False)
    parser.add_argument("--state-dir")
    parser.add_argument("--refresh-seconds")
    parser.add_argument("--jaeger-ui-url")
    try:
        args, _ = parser.parse_known_args(list(argv))
    except SystemExit:  # e.g. an option given without its value
        args = argparse.Namespace(state_dir=None, refresh_seconds=None, jaeger_ui_url=None)
    warnings = []
    raw_refresh = args.refresh_seconds or env.get("OTEL_DIAG_REFRESH_SECONDS") or str(DEFAULT_REFRESH_SECONDS)
    try:
        refresh = float(raw_refresh)
        if not math.isfinite(refresh) or refresh < MIN_REFRESH_SECONDS:
            raise ValueError
    except ValueError:
        warnings.append(f"refresh interval {raw_refresh!r} is not a number of seconds >= {MIN_REFRESH_SECONDS:g}; "
                        f"using {DEFAULT_REFRESH_SECONDS:g}")
        refresh = DEFAULT_REFRESH_SECONDS
    return Options(
        state_dir=args.state_dir or env.get("OTEL_DIAG_STATE_DIR") or "state",
        refresh_seconds=refresh,
        jaeger_ui_url=url_without_credentials(args.jaeger_ui_url or env.get("JAEGER_UI_URL")),
        warnings=tuple(warnings),
    )


def _render_instances(options: Options) -> None:
    instances = list_executor_instances(options.state_dir)
    blocks = [(i.name, load_runtime_diagnostics_state(i.state_dir)) for i in instances]
    st.caption(f"Refreshed {time.strftime('%H:%M:%S UTC', time.gmtime())} · {len(blocks)} executor"
               f"{'s' if len(blocks) != 1 else ''} · every {options.refresh_seconds:g} s")
    if len(blocks) == 1:
        name, block = blocks[0]
        risk_panel.render_executor(block, name, jaeger_ui_url=options.jaeger_ui_url, wide=True)
        return
    for start in range(0, len(blocks), MAX_COLUMNS):
        row = blocks[start:start + MAX_COLUMNS]
        for column, (name, block) in zip(st.columns(MAX_COLUMNS if len(blocks) > MAX_COLUMNS else len(row),
                                                    gap="medium"), row):
            with column:
                risk_panel.render_executor(block, name, jaeger_ui_url=options.jaeger_ui_url, wide=False)


def main(argv: Optional[List[str]] = None) -> None:
    options = parse_options(sys.argv[1:] if argv is None else argv)
    st.set_page_config(page_title="Risk panel · runtime diagnostics", page_icon="🛡️", layout="wide")
    st.title("Risk panel", anchor=False)
    st.caption(f"Runtime diagnostics from {risk_panel.md_escape(options.state_dir)}"
               + (f" · traces in {risk_panel.md_escape(options.jaeger_ui_url)}" if options.jaeger_ui_url else ""))
    for warning in options.warnings:
        st.warning(risk_panel.md_escape(warning))

    @st.fragment(run_every=options.refresh_seconds)
    def live() -> None:
        _render_instances(options)

    live()


if __name__ == "__main__":  # streamlit run (and AppTest) execute the page as __main__
    main()
