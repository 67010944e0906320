"""Spec §5.1 — liveness semantics: missing timestamps, durations, the missing map; DESIGN.md's edge cases."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import otel_diag
from execution.clock import SimClock
from execution.config import LivenessConfig
from execution.diagnostics_metrics import compute_liveness_alerts, record_router_event
from otel_diag import semconv as sc

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
SMALL = LivenessConfig(enabled=True, max_idle_signals_seconds=10, max_idle_orders_seconds=20,
                       max_idle_exits_seconds=30, max_idle_router_events_seconds=40, max_idle_exit_scans_seconds=5)


def _ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).isoformat()


def _all_recent(**overrides):
    ts = {"signals": _ago(1), "orders": _ago(1), "exits": _ago(1), "router": _ago(1), "exit_scans": _ago(1)}
    ts.update(overrides)
    return ts


def test_compute_when_signal_timestamp_missing_then_idle_and_duration_at_least_threshold():
    alerts = compute_liveness_alerts(SMALL, now=NOW, timestamps=_all_recent(signals=None))

    assert alerts.idle_signals is True
    assert alerts.details["signals"] >= SMALL.max_idle_signals_seconds
    assert alerts.missing["signals"] is True


def test_compute_when_timestamps_within_threshold_then_no_idle_flag():
    alerts = compute_liveness_alerts(SMALL, now=NOW, timestamps=_all_recent())

    assert not any([alerts.idle_signals, alerts.idle_orders, alerts.idle_exits, alerts.idle_router, alerts.idle_exit_scans])
    assert alerts.missing == {k: False for k in ("signals", "orders", "exits", "router", "exit_scans")}
    assert all(isinstance(v, float) and v == pytest.approx(1.0) for v in alerts.details.values())


def test_compute_when_timestamps_beyond_threshold_then_idle_with_exact_duration():
    alerts = compute_liveness_alerts(SMALL, now=NOW, timestamps=_all_recent(orders=_ago(25.5), router=_ago(41)))

    assert alerts.idle_orders is True and alerts.details["orders"] == pytest.approx(25.5)
    assert alerts.idle_router is True and alerts.details["router"] == pytest.approx(41.0)
    assert alerts.idle_signals is False and alerts.idle_exits is False


def test_compute_when_timestamp_exactly_at_threshold_then_not_idle():
    alerts = compute_liveness_alerts(SMALL, now=NOW, timestamps=_all_recent(signals=_ago(10)))

    assert alerts.idle_signals is False
    assert alerts.details["signals"] == pytest.approx(10.0)


def test_compute_when_disabled_then_no_flag_and_empty_maps():
    cfg = LivenessConfig(enabled=False)

    alerts = compute_liveness_alerts(cfg, now=NOW, timestamps={"signals": None})

    assert not alerts.any_idle
    assert alerts.details == {} and alerts.missing == {}


@pytest.mark.parametrize("threshold", [None, 0, -5])
def test_compute_when_threshold_none_or_not_positive_then_key_not_checked(threshold):
    cfg = LivenessConfig(max_idle_signals_seconds=threshold) if threshold is None or threshold >= 0 else \
        type("Cfg", (), {"enabled": True, "max_idle_signals_seconds": threshold})()

    alerts = compute_liveness_alerts(cfg, now=NOW, timestamps={"signals": None})

    assert alerts.idle_signals is False
    assert "signals" not in alerts.details and "signals" not in alerts.missing


@pytest.mark.parametrize("value", [
    "2026-01-05T11:59:50",              # naive = UTC
    "2026-01-05T11:59:50Z",
    "2026-01-05T13:59:50+02:00",
    "2026-01-05T11:59:50.000000+00:00",
    NOW.timestamp() - 10,               # Unix number
    int(NOW.timestamp() - 10),
    NOW - timedelta(seconds=10),        # datetime
    (NOW - timedelta(seconds=10)).replace(tzinfo=None),
])
def test_compute_when_timestamp_in_any_supported_form_then_parsed_to_the_same_duration(value):
    alerts = compute_liveness_alerts(SMALL, now=NOW, timestamps=_all_recent(signals=value))

    assert alerts.missing["signals"] is False
    assert alerts.details["signals"] == pytest.approx(10.0)


@pytest.mark.parametrize("garbage", ["", "   ", "yesterday", "2026-13-45T99:00:00", "nan", "inf", float("nan"),
                                     float("inf"), -float("inf"), 1e300, [], {}, True, object()])
def test_compute_when_timestamp_is_garbage_then_missing_and_idle(garbage):
    alerts = compute_liveness_alerts(SMALL, now=NOW, timestamps=_all_recent(signals=garbage))

    assert alerts.missing["signals"] is True
    assert alerts.idle_signals is True
    assert alerts.details["signals"] >= SMALL.max_idle_signals_seconds


def test_compute_when_timestamp_in_future_then_no_flag_and_zero_duration():
    future = (NOW + timedelta(hours=1)).isoformat()

    alerts = compute_liveness_alerts(SMALL, now=NOW, timestamps=_all_recent(signals=future))

    assert alerts.idle_signals is False
    assert alerts.missing["signals"] is False
    assert alerts.details["signals"] == 0.0
    assert all(v >= 0 for v in alerts.details.values())


def test_compute_when_no_timestamps_given_then_reads_recorded_events_on_the_engine_clock():
    clock = SimClock(NOW.timestamp() - 100)
    otel_diag.configure(clock=clock, instrument=False, env={})
    record_router_event()                    # router stamped at NOW-100
    clock.set(NOW.timestamp())

    alerts = compute_liveness_alerts(SMALL)  # now = the engine clock

    assert alerts.missing["router"] is False
    assert alerts.details["router"] == pytest.approx(100.0)
    assert alerts.idle_router is True        # 100 s > 40 s
    assert alerts.missing["signals"] is True and alerts.idle_signals is True
    assert alerts.evaluated_at.startswith("2026-01-05T12:00:00")


def test_compute_when_event_recorded_after_idle_then_recovers():
    clock = SimClock(NOW.timestamp() - 100)
    telemetry = otel_diag.configure(clock=clock, instrument=False, env={})
    record_router_event()
    clock.set(NOW.timestamp())
    assert compute_liveness_alerts(SMALL).idle_router is True

    telemetry.state.stamp(sc.EVENT_ROUTER)   # a fresh router event at NOW

    alerts = compute_liveness_alerts(SMALL)
    assert alerts.idle_router is False and alerts.details["router"] == 0.0


def test_compute_when_spec_style_config_without_exit_scan_key_then_exit_scans_not_checked():
    class SpecCfg:  # exactly the spec's attributes, nothing more
        enabled = True
        max_idle_signals_seconds = 600
        max_idle_orders_seconds = 1200
        max_idle_exits_seconds = 3600
        max_idle_router_events_seconds = 1800

    alerts = compute_liveness_alerts(SpecCfg(), now=NOW, timestamps={})

    assert set(alerts.missing) == {"signals", "orders", "exits", "router"}
    assert alerts.idle_exit_scans is False
