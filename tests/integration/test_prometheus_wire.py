"""Real wire, Prometheus: a real Prometheus server scrapes the executor and alerts from the generated rules.

The executor serves its metrics on 127.0.0.1 (``telemetry.prometheus_port``); Prometheus
(Debian's package) runs on loopback with a 1 s scrape and evaluation interval and the rules
``otel-diag rules`` derives from a small-threshold config. The router_stall scenario at
realtime pace must page for the router and not for the signals, which keep flowing. The
per-symbol scenarios (symbol_freeze, symbol_stale_price), with small per-symbol thresholds and
global ones that never fire, must page for the faulted symbol's failed check only — no other
symbol, no other check, no idle engine — and the in-process block, published at shutdown, must
name the same symbol and check.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import pytest

from execution.config import LIVENESS_THRESHOLD_FIELDS, SYMBOL_THRESHOLD_FIELDS, load_config
from execution.diagnostics_document import SYMBOL_CHECK_KEYS, idle_keys
from execution.scenarios import Scenario
from otel_diag import semconv
from otel_diag.cli import rules
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

# Per-symbol faults: symbol thresholds a few scrape intervals long (a healthy symbol's bar is at most ~1.2 s old
# when a rule reads it: a 1 s scrape of a 0.2 s bar clock); the engine-wide ones never fire within the test.
SYMBOL_THRESHOLDS = {"max_symbol_data_age_seconds": 3, "max_symbol_price_frozen_seconds": 4}
QUIET_THRESHOLDS = {**{field: 600 for field in LIVENESS_THRESHOLD_FIELDS.values()},
                    "max_idle_exits_seconds": None}  # exit triggers are rare: not even missing within the test
SYMBOL_FAULT_AT = 10  # the symbol's fault starts at bar 10, 2 s in


def watch_until_firing(prom: PrometheusServer, executor, executor_log, target: str, alert: str,
                       seen: Dict[Any, Set[str]], key: Callable[[Dict[str, Any]], Any],
                       hint: str) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """Poll Prometheus' alerts, recording in ``seen`` every ``key(alert)`` and the states it was in, until it has
    scraped ``target`` and ``alert`` fires; then a few more evaluations. (The firing entries, the last alerts.)
    Fails when the executor ends early, or naming ``hint``'s query when the alert never fires."""
    def observe() -> List[Dict[str, Any]]:
        if executor.poll() is not None:
            pytest.fail(f"the executor ended early ({executor.returncode}):\n{executor_log.read_text()}")
        alerts = prom.alerts()
        for a in alerts:
            seen.setdefault(key(a), set()).add(a["state"])
        return alerts

    up = wait_until(lambda: observe() is not None and prom.query(f'up{{instance="{target}"}} == 1'), 30, 0.5)
    assert up, f"Prometheus never scraped the executor at {target}: {prom.targets()}\n{prom.log()}"
    firing = wait_until(lambda: active(observe(), alert, "firing"), ALERT_TIMEOUT_S, 0.5)
    assert firing, f"{alert} did not fire within {ALERT_TIMEOUT_S} s; alerts seen: {seen}\n{prom.query(hint)}"
    return firing, keep_polling(observe, OBSERVE_AFTER_FIRING_S, 0.5)


@pytest.fixture(scope="module")
def prometheus() -> str:
    return require_binary("prometheus", "Debian's prometheus package")


def test_prometheus_when_router_stalls_then_router_idle_fires_and_signal_idle_does_not(tmp_path, prometheus):
    exporter_port = free_port()
    config = small_threshold_config(tmp_path, exporter_port, THRESHOLDS)
    generated = generate_rules(config, tmp_path / "liveness_rules.yml")
    assert 'trading_event="router"} > 3' in generated[ROUTER_ALERT]["expr"]
    assert 'trading_event="signal"} > 3' in generated[SIGNAL_ALERT]["expr"]

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

        firing, final = watch_until_firing(prom, executor, executor_log, target, ROUTER_ALERT, seen,
                                           key=lambda a: a["labels"]["alertname"],
                                           hint="time() - trading_last_event_time_seconds")

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
        # the router's age only grows past its threshold; that signals and exit scans kept flowing is what their
        # alerts never firing says (no wall-clock bound on a young age: a stalled machine would fail it)
        assert idle["router"] > THRESHOLDS["max_idle_router_events_seconds"]
        assert {"signal", "exit_scan"} <= set(idle)
    finally:
        code = stop_process(executor)
        prom.stop()
    assert code == 0, f"SIGTERM must end the executor cleanly:\n{executor_log.read_text()}"

    # The in-process block, published at shutdown, agrees with the backend.
    liveness = json.loads((tmp_path / "state" / "diagnostics.json").read_text())["runtime_diagnostics"]["liveness"]
    assert liveness["idle_router"] is True
    assert liveness["idle_signals"] is False


NO_BARS, PRICE_FROZEN = SYMBOL_CHECK_KEYS


@pytest.mark.parametrize(
    "scenario, fault_symbol_index, check",
    [("symbol_freeze", None, NO_BARS), ("symbol_stale_price", -1, PRICE_FROZEN)],
    ids=["symbol_freeze-default-symbol", "symbol_stale_price-last-symbol"],
)
def test_prometheus_when_one_symbol_faulted_then_its_check_fires_for_it_alone_and_block_agrees(
        tmp_path, prometheus, scenario: str, fault_symbol_index: Optional[int], check: str):
    exporter_port = free_port()
    config = small_threshold_config(tmp_path, exporter_port, {**QUIET_THRESHOLDS, **SYMBOL_THRESHOLDS})
    symbols = load_config(str(config)).strategy.symbols
    chosen = None if fault_symbol_index is None else symbols[fault_symbol_index]
    faulted = Scenario(scenario, SYMBOL_FAULT_AT, chosen).fault_symbol(symbols)
    generated = generate_rules(config, tmp_path / "liveness_rules.yml")
    symbol_alerts = [rules.symbol_check_alert(key) for key in SYMBOL_CHECK_KEYS] + [rules.ALERT_SYMBOL_MISSING]
    expected_alert, limit = rules.symbol_check_alert(check), SYMBOL_THRESHOLDS[SYMBOL_THRESHOLD_FIELDS[check]]
    assert set(symbol_alerts) <= set(generated), f"the generated rules lack the per-symbol alerts: {sorted(generated)}"
    gauge = rules.prometheus_name(semconv.METRIC_MARKET_DATA_LAST_UPDATE)
    symbol_label, update_label = rules.symbol_label(), rules.market_data_update_label()
    update = semconv.SYMBOL_CHECK_UPDATES[check]

    target = f"{LOOPBACK}:{exporter_port}"
    prom = PrometheusServer(tmp_path / "prometheus", targets=[target], rule_files=[tmp_path / "liveness_rules.yml"],
                            scrape_interval="1s", evaluation_interval="1s", binary=prometheus)
    executor = None
    executor_log = tmp_path / "executor.log"
    seen: Dict[Tuple[str, Optional[str]], Set[str]] = {}  # (alertname, symbol label) -> states it was ever in
    try:
        prom.start()
        executor = realtime_executor(config, tmp_path / "state", executor_log, scenario=scenario,
                                     fault_at=SYMBOL_FAULT_AT, bar_interval=BAR_INTERVAL, cycles=CYCLES,
                                     fault_symbol=chosen)

        firing, final = watch_until_firing(prom, executor, executor_log, target, expected_alert, seen,
                                           key=lambda a: (a["labels"]["alertname"], a["labels"].get(symbol_label)),
                                           hint=f"time() - {gauge}")

        ages = {r["metric"][symbol_label]: float(r["value"][1]) for r in prom.query(
            f'time() - {gauge}{{instance="{target}", {update_label}="{update}"}}')}
    finally:
        code = stop_process(executor)
        prom.stop()
    assert code == 0, f"SIGTERM must end the executor cleanly:\n{executor_log.read_text()}"

    # The backend: the faulted symbol's check fires, naming it, and nothing else about market data or liveness.
    assert [a["labels"][symbol_label] for a in firing] == [faulted]
    alert = firing[0]
    assert alert["labels"][update_label] == update
    assert alert["labels"]["instance"] == target and alert["labels"]["job"] == "executor"
    assert float(alert["value"]) > limit
    # Any other symbol's alert, or the faulted symbol's other check, in any state; a missing symbol only if it
    # fired: a scrape may catch the first cycle's events before the cycle has stamped its bars (pending, 1 s).
    wrong = {key: states for key, states in seen.items()
             if key[0] in symbol_alerts and key != (expected_alert, faulted)
             and (key[0] != rules.ALERT_SYMBOL_MISSING or "firing" in states)}
    assert not wrong, f"stale-symbol alerts other than {expected_alert} for {faulted}: {wrong}"
    assert not active(final, rules.ALERT_SYMBOL_MISSING), "every configured symbol had bars, yet one is missing"
    idle = {key: states for key, states in seen.items() if key[0].startswith("TradingIdle")}
    assert not idle, f"the engine kept working, yet an idle alert was raised: {idle}"
    assert set(ages) == set(symbols), ages
    assert ages[faulted] > limit, ages  # the healthy ones stayed under it: no alert for them, above

    # The in-process block, published at shutdown, names the same symbol and check.
    liveness = json.loads((tmp_path / "state" / "diagnostics.json").read_text())["runtime_diagnostics"]["liveness"]
    assert liveness["stale_symbols"] == [faulted]
    assert liveness["symbol_checks"] == {faulted: check}
    assert liveness["missing_symbols"] == []
    assert idle_keys(liveness) == []
