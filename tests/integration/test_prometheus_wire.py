"""Real wire, Prometheus: a real Prometheus server scrapes the executor and alerts from the generated rules.

The executor serves its metrics on 127.0.0.1 (``telemetry.prometheus_port``); Prometheus
(Debian's package) runs on loopback with a 1 s scrape and evaluation interval and the rules
``otel-diag rules`` derives from a small-threshold config. The router_stall scenario at
realtime pace must page for the router and not for the signals, which keep flowing.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Set

import pytest

from tests.fixtures.env import LOOPBACK, free_port
from tests.fixtures.polling import keep_polling, wait_until
from tests.fixtures.prometheus import active, generate_rules, realtime_executor, require_binary, small_threshold_config
from tests.integration.wire_helpers import PrometheusServer, stop_process

pytestmark = pytest.mark.prometheus

THRESHOLDS = {  # seconds: small enough for a test, large enough for a busy machine
    "max_idle_signals_seconds": 3,
    "max_idle_orders_seconds": 3,
    "max_idle_router_events_seconds": 3,
    "max_idle_exits_seconds": 60,
    "max_idle_exit_scans_seconds": 3,
}
BAR_INTERVAL = 0.2  # wall seconds a bar
FAULT_AT = 10  # the router stalls from bar 10 (2 s in); the last router event is bar 8 with seed 7
CYCLES = 300  # 60 s at most; the test stops the executor as soon as it has seen enough
ALERT_TIMEOUT_S = 60
OBSERVE_AFTER_FIRING_S = 3  # keep watching a few more evaluations for a wrongly firing signal alert
ROUTER_ALERT, SIGNAL_ALERT = "TradingIdleRouter", "TradingIdleSignals"


@pytest.fixture(scope="module")
def prometheus() -> str:
    return require_binary("prometheus", "Debian's prometheus package")


def test_prometheus_when_router_stalls_then_router_idle_fires_and_signal_idle_does_not(tmp_path, prometheus):
    exporter_port = free_port()
    config = small_threshold_config(tmp_path, exporter_port, THRESHOLDS)
    rules = generate_rules(config, tmp_path / "liveness_rules.yml")
    assert 'trading_event="router"} > 3' in rules[ROUTER_ALERT]["expr"]
    assert 'trading_event="signal"} > 3' in rules[SIGNAL_ALERT]["expr"]

    target = f"{LOOPBACK}:{exporter_port}"
    prom = PrometheusServer(tmp_path / "prometheus", targets=[target], rule_files=[tmp_path / "liveness_rules.yml"],
                            scrape_interval="1s", evaluation_interval="1s", binary=prometheus)
    executor = None
    executor_log = tmp_path / "executor.log"
    seen: Dict[str, Set[str]] = {}  # alertname -> states it was ever seen in
    try:
        prom.start()
        loaded = {r["name"] for g in prom.api("rules")["groups"] for r in g["rules"]}
        assert {ROUTER_ALERT, SIGNAL_ALERT} <= loaded, f"Prometheus did not load the rules: {sorted(loaded)}"

        executor = realtime_executor(config, tmp_path / "state", executor_log, scenario="router_stall",
                                     fault_at=FAULT_AT, bar_interval=BAR_INTERVAL, cycles=CYCLES)

        def observe() -> List[Dict[str, Any]]:
            if executor.poll() is not None:
                pytest.fail(f"the executor ended early ({executor.returncode}):\n{executor_log.read_text()}")
            alerts = prom.alerts()
            for a in alerts:
                seen.setdefault(a["labels"]["alertname"], set()).add(a["state"])
            return alerts

        up = wait_until(lambda: observe() is not None and prom.query(f'up{{instance="{target}"}} == 1'), 30, 0.5)
        assert up, f"Prometheus never scraped the executor at {target}: {prom.targets()}\n{prom.log()}"

        firing = wait_until(lambda: active(observe(), ROUTER_ALERT, "firing"), ALERT_TIMEOUT_S, 0.5)
        assert firing, (f"{ROUTER_ALERT} did not fire within {ALERT_TIMEOUT_S} s; alerts seen: {seen}\n"
                        f"{prom.query('time() - trading_last_event_time_seconds')}")
        final = keep_polling(observe, OBSERVE_AFTER_FIRING_S, 0.5)

        alert = firing[0]
        assert alert["labels"]["trading_event"] == "router"
        assert alert["labels"]["instance"] == target and alert["labels"]["job"] == "executor"
        assert alert["labels"]["severity"] == "warning"
        assert float(alert["value"]) > THRESHOLDS["max_idle_router_events_seconds"]
        assert SIGNAL_ALERT not in seen, f"signals kept flowing, yet {SIGNAL_ALERT} was {seen[SIGNAL_ALERT]}"
        # Before the executor served its first scrape, absent() made the *Missing alerts pending (by design);
        # once the series exist they must clear.
        for name in ("TradingSignalsMissing", "TradingRouterMissing"):
            assert not active(final, name), f"{name} still active although the series is scraped: {active(final, name)}"
        idle = {r["metric"]["trading_event"]: float(r["value"][1])
                for r in prom.query(f'time() - trading_last_event_time_seconds{{instance="{target}"}}')}
        assert idle["router"] > THRESHOLDS["max_idle_router_events_seconds"]
        assert idle["signal"] < THRESHOLDS["max_idle_signals_seconds"]
        assert idle["exit_scan"] < THRESHOLDS["max_idle_exit_scans_seconds"]
    finally:
        code = stop_process(executor)
        prom.stop()
    assert code == 0, f"SIGTERM must end the executor cleanly:\n{executor_log.read_text()}"

    # The in-process block, published at shutdown, agrees with the backend.
    liveness = json.loads((tmp_path / "state" / "diagnostics.json").read_text())["runtime_diagnostics"]["liveness"]
    assert liveness["idle_router"] is True
    assert liveness["idle_signals"] is False
