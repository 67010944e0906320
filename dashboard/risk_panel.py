"""The risk panel's pieces: pure view models of the diagnostics block, and thin Streamlit renderers.

Usage::

    from execution.state_v7 import load_runtime_diagnostics_state
    from dashboard import risk_panel

    block = load_runtime_diagnostics_state("state")
    risk_panel.liveness_rows(block)          # pure: a LivenessRow per key, unit-testable
    risk_panel.market_data_rows(block)       # pure: a MarketDataRow per stale symbol, or one saying all are fresh
    risk_panel.render_executor(block, "executor-a", jaeger_ui_url="http://127.0.0.1:16686")

Trust follows ``block["status"]``: only a fresh, well-formed file (``"ok"``) of a running executor
can show green. Anything else shows grey "unknown" marks, with the last known figures where the
file had any; a stopped or failed executor gets its own badge and banner, whatever its age.
Every string that comes from a state file is escaped before it reaches Streamlit's Markdown
(tables and captions render Markdown); nothing is ever rendered as HTML.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timezone
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple
from urllib.parse import quote, urlsplit

from execution.diagnostics_document import (
    LIVENESS_CHECKS,
    STATUS_INVALID,
    STATUS_MISSING,
    STATUS_OK,
    STATUS_STALE,
    VERDICT_ALERTING,
    VERDICT_FAILED,
    VERDICT_HEALTHY,
    VERDICT_STOPPED,
    format_age,
    health,
    idle_keys,
    parse_iso,
    run_ended,
    NOT_CHECKED,
    fresh_symbols_text,
    more_stale_text,
    shown_stale_symbols,
    symbol_limit_text,
)

ICON_OK = "✅"
ICON_BAD = "🔴"
ICON_WARN = "🟠"
ICON_UNKNOWN = "⚪"
ICON_NONE = "➖"
ICON_STOPPED = "⏹️"
ICON_FAILED = "💥"

MAX_SYMBOLS_SHOWN = 8
MARKET_DATA_LABEL = "Market data"  # the liveness card's rows for per-symbol market data
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_WORD_JOINER = "\u2060"
_AUTOLINK = re.compile(r"(://|www\.|@)", re.IGNORECASE)
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$&=\"'])")


# -- text safety --------------------------------------------------------------------------
def md_escape(value: Any) -> str:
    """``value`` as Markdown that renders as exactly its text: every ASCII punctuation escaped.

    GFM also turns bare ``http://``, ``www.`` and ``a@b.c`` text into links after parsing, which
    escapes cannot stop; an invisible word joiner (U+2060) breaks those patterns instead.
    """
    text = value if isinstance(value, str) else str(value)
    text = " ".join(text.split())  # no line breaks, no Markdown blocks
    text = _AUTOLINK.sub(lambda m: m.group(0)[:-1] + _WORD_JOINER + m.group(0)[-1], text)
    return _MD_SPECIAL.sub(r"\\\1", text)


def jaeger_trace_url(base: Any, trace_id: Any) -> Optional[str]:
    """``{base}/trace/{trace_id}`` when ``base`` is an http(s) URL and the id a 32-hex trace id."""
    if not isinstance(base, str) or not isinstance(trace_id, str) or not _TRACE_ID.match(trace_id):
        return None
    try:
        parts = urlsplit(base.strip())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc or trace_id == "0" * 32:
        return None
    safe = quote(base.strip().rstrip("/"), safe=":/?#@!$&'*+,;=%-._~")
    return f"{safe}/trace/{trace_id}"


def resolve_jaeger_ui_url(block: Mapping[str, Any], configured: Optional[str] = None) -> Optional[str]:
    """The Jaeger UI address: the operator's (``JAEGER_UI_URL``/``--jaeger-ui-url``) first, then the file's."""
    for candidate in (configured, _service(block).get("jaeger_ui_url")):
        if isinstance(candidate, str) and jaeger_trace_url(candidate, "1" * 32):
            return candidate
    return None


def format_time(value: Any) -> str:
    """An ISO time from the file as ``2026-01-05 07:59:00 UTC``; ``—`` when absent or unreadable."""
    parsed = parse_iso(value)
    if parsed is None:
        return "—"
    try:
        return parsed.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (ValueError, OverflowError):
        return "—"


# -- block access that cannot fail --------------------------------------------------------
def _dict(value: Any) -> Dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _section(block: Mapping[str, Any], name: str) -> Dict[str, Any]:
    return _dict(_dict(block.get("runtime_diagnostics") if isinstance(block, Mapping) else None).get(name))


def _service(block: Mapping[str, Any]) -> Dict[str, Any]:
    return _dict(block.get("service")) if isinstance(block, Mapping) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _seconds(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def trust(block: Mapping[str, Any]) -> str:
    """``"ok"`` (fresh, well-formed, running), ``"last_known"`` (figures exist but are not live) or ``"none"``."""
    status = block.get("status") if isinstance(block, Mapping) else None
    if status == STATUS_OK and run_ended(block) is None:
        return "ok"
    has_snapshot = isinstance(block, Mapping) and block.get("written_at") is not None
    return "last_known" if status in (STATUS_OK, STATUS_STALE, STATUS_INVALID) and has_snapshot else "none"


# -- view models ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Banner:
    level: str  # "error" | "info"
    text: str   # Markdown, file values escaped


@dataclass(frozen=True)
class LivenessRow:
    key: str
    label: str
    icon: str
    state: str  # ok | idle | missing | unknown | not_checked | disabled
    text: str
    threshold: str
    trace_url: Optional[str]


@dataclass(frozen=True)
class MarketDataRow:
    symbol: Optional[str]  # the stale symbol as the file names it; None for a summary row
    check: Optional[str]   # its failed check (a SYMBOL_CHECKS key); None for a summary row
    icon: str
    state: str  # ok | stale | more | unknown | not_checked | disabled
    text: str   # Markdown, file values escaped
    threshold: str
    age: Optional[float] = None  # seconds since what the failed check counts from; None when never seen


@dataclass(frozen=True)
class HealthRow:
    icon: str
    label: str
    value: str  # Markdown, file values escaped


def banner(block: Mapping[str, Any]) -> Optional[Banner]:
    """The staleness / trust banner: None when the file is fresh and well-formed."""
    status = block.get("status") if isinstance(block, Mapping) else None
    reason = md_escape(block.get("reason", "")) if isinstance(block, Mapping) else ""
    ended = run_ended(block)
    if ended is not None:
        text = f"**The executor {md_escape(health(block).summary)}**. Checks show its final snapshot."
        return Banner("error" if ended == VERDICT_FAILED else "info", text)
    if status == STATUS_OK:
        return None
    if status == STATUS_STALE:
        return Banner("error", f"**Stale diagnostics**: {reason}. Is the executor running? Checks show unknown.")
    if status == STATUS_MISSING:
        return Banner("error", f"**No diagnostics**: {reason}. Checks show unknown.")
    label = md_escape(status if isinstance(status, str) else "unknown")
    return Banner("error", f"**Diagnostics unusable ({label})**: {reason}. Checks show unknown.")


def liveness_rows(block: Mapping[str, Any], jaeger_ui_url: Optional[str] = None) -> List[LivenessRow]:
    """One row per liveness key, in display order (signals, orders, exits, exit scans, router)."""
    live = _section(block, "liveness")
    details, missing = _dict(live.get("details")), _dict(live.get("missing"))
    thresholds, traces = _dict(live.get("thresholds")), _dict(live.get("last_trace_ids"))
    level = trust(block)
    idle_now = idle_keys(live)
    rows = []
    for check in LIVENESS_CHECKS:
        key = check.key
        duration = _seconds(details.get(key))
        limit = _seconds(thresholds.get(key))
        idle = key in idle_now
        was_missing = missing.get(key) is True
        checked = key in details or key in missing or key in thresholds
        if was_missing:
            state, text = "missing", "never seen (missing)"
        elif idle:
            state, text = "idle", f"idle for {format_age(duration)}" if duration is not None else "idle"
        elif live.get("enabled") is False:
            state, text = "disabled", "liveness checks disabled"
        elif not checked:
            state, text = "not_checked", "not checked (no threshold)"
        else:
            state, text = "ok", f"idle for {format_age(duration)}" if duration is not None else "active"
        icon = {"ok": ICON_OK, "idle": ICON_BAD, "missing": ICON_BAD}.get(state, ICON_NONE)
        if level != "ok":
            text = "unknown" if level == "none" else f"unknown (last known: {text})"
            state, icon = "unknown", ICON_UNKNOWN
        trace = jaeger_trace_url(jaeger_ui_url, traces.get(key)) if jaeger_ui_url else None
        rows.append(LivenessRow(key=key, label=check.label, icon=icon, state=state, text=text,
                                threshold=format_age(limit) if limit is not None else "—", trace_url=trace))
    return rows


def _names(value: Any) -> List[str]:
    return [s for s in value if isinstance(s, str)] if isinstance(value, list) else []


def _by_name(value: Any, keep: Any) -> Dict[str, Any]:
    """The entries of a map keyed by text whose value ``keep`` turns into something (None: left out)."""
    kept = ((k, keep(v)) for k, v in _dict(value).items() if isinstance(k, str))
    return {k: v for k, v in kept if v is not None}


def _symbol_fields(live: Mapping[str, Any]) -> Dict[str, Any]:
    """The per-symbol fields in the shapes the loader guarantees, whatever reached here (a block is untrusted)."""
    return {"stale_symbols": _names(live.get("stale_symbols")), "missing_symbols": _names(live.get("missing_symbols")),
            "symbol_checks": _by_name(live.get("symbol_checks"), lambda v: v if isinstance(v, str) else None),
            "symbol_details": _by_name(live.get("symbol_details"), lambda ages: _by_name(ages, _seconds)),
            "symbol_thresholds": _by_name(live.get("symbol_thresholds"),
                                          lambda t: t if _seconds(t) is not None and t > 0 else None)}


def market_data_rows(block: Mapping[str, Any]) -> List[MarketDataRow]:
    """One row per stale symbol the verdict names (then "and N more"), or one row saying every symbol is fresh, or
    that market data is not checked."""
    raw = _section(block, "liveness")
    live = _symbol_fields(raw)
    shown, more = shown_stale_symbols(live)
    fresh = fresh_symbols_text(live)
    if shown:
        details, missing = live["symbol_details"], live["missing_symbols"]
        rows = [MarketDataRow(symbol, check, ICON_BAD, "stale", md_escape(text), symbol_limit_text(live, check, "—"),
                              None if symbol in missing else details.get(symbol, {}).get(check))
                for symbol, check, text in shown]
        if more:
            rows.append(MarketDataRow(None, None, ICON_BAD, "more", more_stale_text(more), "—"))
    elif raw.get("enabled") is False:
        rows = [MarketDataRow(None, None, ICON_NONE, "disabled", "liveness checks disabled", "—")]
    elif fresh == NOT_CHECKED:
        rows = [MarketDataRow(None, None, ICON_NONE, "not_checked", NOT_CHECKED, "—")]
    else:
        rows = [MarketDataRow(None, None, ICON_OK, "ok", fresh, symbol_limit_text(live))]
    level = trust(block)
    if level == "ok":
        return rows
    return [MarketDataRow(r.symbol, r.check, ICON_UNKNOWN, "unknown",
                          "unknown" if level == "none" else f"unknown (last known: {r.text})", r.threshold, r.age)
            for r in rows]


def _symbols_text(symbols: Any) -> str:
    names = [md_escape(s) for s in _names(symbols)]
    shown = ", ".join(names[:MAX_SYMBOLS_SHOWN])
    return shown + (f" (+{len(names) - MAX_SYMBOLS_SHOWN} more)" if len(names) > MAX_SYMBOLS_SHOWN else "")


def exit_health_rows(block: Mapping[str, Any]) -> List[HealthRow]:
    """Open positions, TP/SL coverage, ledger/registry mismatch, underwater without TP/SL, orphans."""
    ex = _section(block, "exit_pipeline")
    level = trust(block)
    open_n, registered = _int(ex.get("open_positions_count")), _int(ex.get("tp_sl_registered_count"))
    missing_n, under_n = _int(ex.get("tp_sl_missing_count")), _int(ex.get("underwater_without_tp_sl_count"))
    orphans = _int(ex.get("tp_sl_orphan_count"))
    coverage = _seconds(ex.get("tp_sl_coverage_pct"))
    mismatch = ex.get("ledger_registry_mismatch") is True or missing_n > 0

    if open_n == 0:
        cover = (ICON_NONE, "—, no open positions")
    else:
        pct = coverage if coverage is not None and 0 <= coverage <= 1 else 0.0
        cover = (ICON_OK if pct >= 1 and not mismatch else ICON_BAD, f"{pct:.0%} ({registered} of {open_n} protected)")
    missing_syms = _symbols_text(ex.get("missing_tp_sl_symbols"))
    under_syms = _symbols_text(ex.get("underwater_without_tp_sl_symbols"))
    rows = [
        HealthRow(ICON_NONE, "Open positions", str(open_n)),
        HealthRow(cover[0], "TP/SL coverage", cover[1]),
        HealthRow(ICON_BAD, "Ledger vs TP/SL registry",
                  f"mismatch: {missing_n} open without TP/SL" + (f": {missing_syms}" if missing_syms else ""))
        if mismatch else HealthRow(ICON_OK, "Ledger vs TP/SL registry", "in agreement"),
        HealthRow(ICON_BAD if under_n else ICON_OK, "Underwater without TP/SL",
                  f"{under_n}" + (f": {under_syms}" if under_n and under_syms else "")),
        HealthRow(ICON_WARN if orphans else ICON_OK, "Orphaned TP/SL entries",
                  f"{orphans}" + (" (registry entries with no open position)" if orphans else "")),
    ]
    if level == "ok":
        return rows
    return [HealthRow(ICON_UNKNOWN, r.label, "unknown" if level == "none" else f"unknown (last known: {r.value})")
            for r in rows]


def veto_cells(block: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """Long-format heatmap cells ``{"reason", "symbol", "vetoes"}``; reason × symbol when known."""
    vc = _section(block, "veto_counters")
    cells = []
    for reason, per_symbol in _dict(vc.get("by_reason_symbol")).items():
        for symbol, count in _dict(per_symbol).items():
            if _int(count):
                cells.append({"reason": str(reason), "symbol": str(symbol), "vetoes": _int(count)})
    if not cells:  # a writer without the reason × symbol extra: one column for all symbols
        cells = [{"reason": str(r), "symbol": "(all symbols)", "vetoes": _int(c)}
                 for r, c in _dict(vc.get("by_reason")).items() if _int(c)]
    return sorted(cells, key=lambda c: (c["reason"], c["symbol"]))


def veto_totals(block: Mapping[str, Any]) -> Dict[str, Any]:
    """Totals for the veto card: signals, orders, vetoes, and the last veto's time as text."""
    vc = _section(block, "veto_counters")
    last = parse_iso(vc.get("last_veto_ts"))
    evaluated = parse_iso(_section(block, "liveness").get("evaluated_at") or block.get("evaluated_at"))
    when = "never" if last is None else format_time(vc.get("last_veto_ts"))
    if last is not None and evaluated is not None:
        gap = (evaluated - last).total_seconds()
        when += f" ({format_age(gap)} before the snapshot)" if gap >= 1 else " (at the snapshot)"
    return {"signals": _int(vc.get("total_signals")), "orders": _int(vc.get("total_orders")),
            "vetoes": _int(vc.get("total_vetoes")), "last_veto": when, "overflow": vc.get("overflow") is True}


def header_caption(block: Mapping[str, Any]) -> str:
    """One line under the executor's name: service, instance, scenario, pace, state, file age (escaped)."""
    svc = _service(block)
    parts = [md_escape(svc[k]) for k in ("name", "instance_id", "environment", "scenario", "pace", "state")
             if isinstance(svc.get(k), str) and svc.get(k)]
    age = block.get("age_seconds") if isinstance(block, Mapping) else None
    if _seconds(age) is not None:
        parts.append(f"written {format_age(age)} ago")
    engine_time = format_time(block.get("evaluated_at")) if isinstance(block, Mapping) else "—"
    if engine_time != "—":
        parts.append(f"engine time {engine_time}")
    return " · ".join(parts) or "no snapshot"


def status_badge(block: Mapping[str, Any]) -> str:
    """A one-glance verdict for the executor's heading: healthy, alerting, stopped, failed or unknown."""
    label = health(block).label
    icon = {VERDICT_HEALTHY: ICON_OK, VERDICT_ALERTING: ICON_BAD, VERDICT_STOPPED: ICON_STOPPED,
            VERDICT_FAILED: ICON_FAILED}.get(label, ICON_UNKNOWN)
    return f"{icon} {label}"


# -- Streamlit renderers (thin: all decisions above) ------------------------------------------
def _table(rows: Iterable[Tuple[str, ...]], columns: List[str]) -> Any:
    import pandas as pd

    return pd.DataFrame(list(rows), columns=columns)


def render_liveness_card(rows: List[LivenessRow], *, with_traces: bool = False,
                         market: Iterable[MarketDataRow] = ()) -> None:
    import streamlit as st

    with st.container(border=True):
        st.markdown("**Liveness**")
        columns = ["", "Check", "Status", "Limit"] + (["Last event"] if with_traces else [])
        data = [(r.icon, r.label, r.text, r.threshold)
                + (((f"[trace ↗]({r.trace_url})" if r.trace_url else "—"),) if with_traces else ())
                for r in rows]
        data += [(r.icon, MARKET_DATA_LABEL, r.text, r.threshold) + (("—",) if with_traces else ()) for r in market]
        st.table(_table(data, columns), border="horizontal", hide_index=True)


def render_exit_health_card(rows: List[HealthRow]) -> None:
    import streamlit as st

    with st.container(border=True):
        st.markdown("**Exit health**")
        st.table(_table(((r.icon, r.label, r.value) for r in rows), ["", "Check", "Value"]),
                 border="horizontal", hide_index=True)


def veto_heatmap(cells: List[Dict[str, Any]]) -> Any:
    """An Altair heatmap of vetoes, reason × symbol, with the count in each cell."""
    import altair as alt
    import pandas as pd

    frame = pd.DataFrame(cells, columns=["reason", "symbol", "vetoes"])
    totals = frame.groupby("reason")["vetoes"].transform("sum")
    frame["row"] = frame["reason"] + " (" + totals.astype(str) + ")"
    base = alt.Chart(frame).encode(
        x=alt.X("symbol:N", title=None, axis=alt.Axis(labelAngle=-40, labelLimit=120, orient="bottom")),
        y=alt.Y("row:N", title=None, axis=alt.Axis(labelLimit=220)),
    )
    heat = base.mark_rect(cornerRadius=2).encode(
        color=alt.Color("vetoes:Q", scale=alt.Scale(scheme="orangered", domainMin=0), legend=None),
        tooltip=[alt.Tooltip("reason:N"), alt.Tooltip("symbol:N"), alt.Tooltip("vetoes:Q")],
        stroke=alt.value("white"), strokeWidth=alt.value(1),
    )
    labels = base.mark_text(fontSize=11).encode(
        text="vetoes:Q",
        color=alt.condition(alt.datum.vetoes > frame["vetoes"].max() * 0.55, alt.value("white"), alt.value("#333")),
    )
    return (heat + labels).properties(height=alt.Step(30))


def render_veto_card(block: Mapping[str, Any]) -> None:
    import streamlit as st

    totals, cells = veto_totals(block), veto_cells(block)
    with st.container(border=True):
        st.markdown("**Risk vetoes** (reason × symbol)")
        a, b, c = st.columns(3)
        a.metric("Signals", totals["signals"])
        b.metric("Orders", totals["orders"])
        c.metric("Vetoes", totals["vetoes"])
        st.caption(f"Last veto: {totals['last_veto']}"
                   + (" · some series were folded into \\_other (cardinality cap)" if totals["overflow"] else ""))
        if cells:
            st.altair_chart(veto_heatmap(cells), width="stretch")
        else:
            st.caption("No vetoes recorded.")


def render_executor(block: Mapping[str, Any], name: str, *, jaeger_ui_url: Optional[str] = None,
                    wide: bool = True) -> None:
    """One executor: heading, banner, liveness (with market data) and exit health cards, veto heatmap."""
    import streamlit as st

    st.subheader(f"{md_escape(name)} · {status_badge(block)}", anchor=False)
    st.caption(header_caption(block))
    note = banner(block)
    if note is not None:
        (st.info if note.level == "info" else st.error)(note.text)
    jaeger = resolve_jaeger_ui_url(block, jaeger_ui_url)
    rows, market = liveness_rows(block, jaeger), market_data_rows(block)
    if wide:
        left, right = st.columns([3, 2])
        with left:
            render_liveness_card(rows, with_traces=jaeger is not None, market=market)
        with right:
            render_exit_health_card(exit_health_rows(block))
    else:
        render_liveness_card(rows, with_traces=jaeger is not None, market=market)
        render_exit_health_card(exit_health_rows(block))
    render_veto_card(block)
