"""The alert path end to end on real servers: executor → Prometheus → Alertmanager → webhook.

All on 127.0.0.1, free ports, temp dirs: the executor serves ``/metrics`` at realtime pace with
the ``router_stall`` fault; Debian's ``prometheus`` scrapes it every second and evaluates the
rules ``otel-diag rules`` derives from a small-threshold config; Debian's
``prometheus-alertmanager`` runs the shipped ``collector/alertmanager/alertmanager.yml`` with
1 s grouping and its webhook pointed at a stdlib HTTP server in this process. The webhook
must get the router-idle alert of this executor, and no alert the stall does not explain.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any, Dict, Set

import pytest
import yaml

from otel_diag import semconv
from otel_diag.cli import rules as rules_cli
from tests.fixtures.env import LOOPBACK, free_port
from tests.fixtures.polling import keep_polling, wait_until
from tests.fixtures.prometheus import generate_rules, realtime_executor, require_binary, small_threshold_config
from tests.integration.wire_helpers import AlertmanagerServer, PrometheusServer, WebhookReceiver, stop_process

pytestmark = pytest.mark.prometheus

ROOT = Path(__file__).resolve().parents[2]
ALERTMANAGER_YML = ROOT / "collector" / "alertmanager" / "alertmanager.yml"
PROMETHEUS_YML = ROOT / "collector" / "prometheus" / "prometheus.yml"
PACKAGE = "Debian's prometheus-alertmanager package"
# Seconds. A threshold T is also the `for` of the kind's `…Missing` rule (absent() until Prometheus first
# scrapes the executor), and Prometheus applies its scrape targets on a 5 s tick after start: T must stay
# well above that, or the `…Missing` alerts fire (and reach the webhook) before the first scrape.
THRESHOLDS = {
    "max_idle_signals_seconds": 10,
    "max_idle_orders_seconds": 10,
    "max_idle_router_events_seconds": 10,
    "max_idle_exits_seconds": 600,  # exit triggers are rare: neither idle nor missing within the test
    "max_idle_exit_scans_seconds": 10,
}
BAR_INTERVAL = 0.2  # wall seconds a bar
FAULT_AT = 10  # the router stalls from bar 10 (2 s in); the last router event is bar 8 with seed 7
CYCLES = 300  # 60 s at most; the test stops the executor as soon as it has seen enough
DELIVERY_TIMEOUT_S = 60
OBSERVE_AFTER_DELIVERY_S = 4  # a few more evaluations and group_waits for a wrongly delivered alert
FAST_GROUPING = {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"}


@pytest.fixture(scope="module")
def prometheus() -> str:
    return require_binary("prometheus", "Debian's prometheus package")


@pytest.fixture(scope="module")
def alertmanager() -> str:
    return require_binary("prometheus-alertmanager", PACKAGE)


@pytest.fixture(scope="module")
def amtool() -> str:
    return require_binary("amtool", PACKAGE)


# -- configs ------------------------------------------------------------------------------
def _test_alertmanager_config(webhook_url: str) -> Dict[str, Any]:
    """The shipped example with 1 s grouping and every webhook pointed at ``webhook_url``."""
    cfg = yaml.safe_load(ALERTMANAGER_YML.read_text(encoding="utf-8"))
    routes = [cfg["route"], *cfg["route"].get("routes", [])]
    for route in routes:
        route.update({k: v for k, v in FAST_GROUPING.items() if route is cfg["route"] or k in route})
    webhooks = [w for r in cfg["receivers"] for w in r.get("webhook_configs", [])]
    assert webhooks, "the shipped alertmanager.yml has no webhook receiver"
    for webhook in webhooks:
        webhook["url"] = webhook_url
    return cfg


def _idle_alerts(rules: Dict[str, Dict[str, Any]]) -> Dict[str, str]:
    """Event kind → the name of its idle alert, read off the generated expressions."""
    last_event = re.escape(rules_cli.prometheus_name(semconv.METRIC_LAST_EVENT_TIME))
    label = re.escape(rules_cli.event_label())
    idle = re.compile(rf'time\(\) - {last_event}\{{{label}="(\w+)"\}} > [0-9.]+')
    return {m.group(1): name for name, rule in rules.items() if (m := idle.fullmatch(rule["expr"]))}


# -- tests --------------------------------------------------------------------------------
def test_amtool_check_config_when_shipped_alertmanager_yml_then_valid_with_localhost_defaults(amtool):
    result = subprocess.run([amtool, "check-config", str(ALERTMANAGER_YML)], capture_output=True, text=True,
                            timeout=60)

    assert result.returncode == 0, f"amtool check-config failed:\n{result.stdout}{result.stderr}"
    assert "SUCCESS" in result.stdout
    cfg = yaml.safe_load(ALERTMANAGER_YML.read_text(encoding="utf-8"))
    assert cfg["route"]["group_by"] == ["alertname", *rules_cli.INSTANCE_LABELS]
    urls = [w["url"] for r in cfg["receivers"] for w in r.get("webhook_configs", [])]
    assert urls and all(u.startswith(f"http://{LOOPBACK}:") for u in urls), urls
    prometheus_cfg = yaml.safe_load(PROMETHEUS_YML.read_text(encoding="utf-8"))
    targets = [t for am in prometheus_cfg["alerting"]["alertmanagers"] for s in am["static_configs"] for t in s["targets"]]
    assert targets == [f"{LOOPBACK}:9093"]  # Alertmanager's default port, on loopback


def test_alertmanager_when_router_stalls_then_webhook_gets_router_idle_and_no_unrelated_alert(
        tmp_path, prometheus, alertmanager):
    exporter_port = free_port()
    config = small_threshold_config(tmp_path, exporter_port, THRESHOLDS)
    rule_file = tmp_path / "liveness_rules.yml"
    rules = generate_rules(config, rule_file)
    idle_alerts = _idle_alerts(rules)
    router_alert = idle_alerts[semconv.EVENT_ROUTER]
    # An order event is the router taking the order: the stall silences orders too, by the same cause.
    related = {router_alert, idle_alerts[semconv.EVENT_ORDER]}
    unrelated = set(rules) - related
    assert idle_alerts[semconv.EVENT_SIGNAL] in unrelated and idle_alerts[semconv.EVENT_EXIT_SCAN] in unrelated

    target = f"{LOOPBACK}:{exporter_port}"
    webhook = WebhookReceiver()
    am_config = _test_alertmanager_config(webhook.url)
    am = AlertmanagerServer(tmp_path / "alertmanager", am_config, alertmanager)
    prom = PrometheusServer(tmp_path / "prometheus", targets=[target], rule_files=[rule_file],
                            scrape_interval="1s", evaluation_interval="1s", binary=prometheus,
                            alertmanagers=[am.address])
    executor = None
    executor_log = tmp_path / "executor.log"
    seen: Dict[str, Set[str]] = {}  # alertname -> states Prometheus had it in
    try:
        webhook.start()
        am.start()
        prom.start()
        loaded = {r["name"] for g in prom.api("rules")["groups"] for r in g["rules"]}
        assert set(rules) <= loaded, f"Prometheus did not load the rules: {sorted(loaded)}"

        executor = realtime_executor(config, tmp_path / "state", executor_log, scenario="router_stall",
                                     fault_at=FAULT_AT, bar_interval=BAR_INTERVAL, cycles=CYCLES)

        def observe() -> Set[str]:
            if executor.poll() is not None:
                pytest.fail(f"the executor ended early ({executor.returncode}):\n{executor_log.read_text()}")
            for a in prom.alerts():
                seen.setdefault(a["labels"]["alertname"], set()).add(a["state"])
            return webhook.delivered()

        delivered = wait_until(lambda: router_alert in observe(), DELIVERY_TIMEOUT_S, 0.5)
        assert delivered, (f"{router_alert} never reached the webhook within {DELIVERY_TIMEOUT_S} s; "
                           f"Prometheus alerts seen: {seen}; webhook got: {webhook.alerts()}\n"
                           f"alertmanager log:\n{am.log()}\nprometheus log:\n{prom.log()}")
        keep_polling(observe, OBSERVE_AFTER_DELIVERY_S, 0.5)
        held = {a["labels"]["alertname"] for a in am.alerts()}
        idle = {r["metric"][rules_cli.event_label()]: float(r["value"][1]) for r in prom.query(
            f'time() - {rules_cli.prometheus_name(semconv.METRIC_LAST_EVENT_TIME)}{{instance="{target}"}}')}
        # Whether Prometheus ever failed a scrape of the executor during the run (a 1 s scrape on a loaded
        # machine can time out): its series then go stale, and the alert resolves and fires again, as it would
        # in production. Only with every scrape answered is "one notification" a claim about the rules.
        lost_scrapes = any(float(r["value"][1]) < 1 for r in prom.query(f'min_over_time(up{{instance="{target}"}}[5m])'))
    finally:
        code = stop_process(executor)
        prom.stop()
        am.stop()
        webhook.stop()
    assert code == 0, f"SIGTERM must end the executor cleanly:\n{executor_log.read_text()}"

    assert not webhook.errors, webhook.errors
    # What Prometheus saw at the end: the router stalled.
    # (that signals and exit scans kept flowing is their alerts never firing, below: no wall-clock bound on a young age)
    assert idle[semconv.EVENT_ROUTER] > THRESHOLDS["max_idle_router_events_seconds"], idle
    assert {semconv.EVENT_SIGNAL, semconv.EVENT_EXIT_SCAN} <= set(idle), idle
    routed = [a for a in webhook.alerts() if a["labels"]["alertname"] == router_alert]
    alert = routed[0]
    assert alert["status"] == "firing" and alert["receiver"] == am_config["route"]["receiver"]
    assert alert["labels"]["trading_event"] == semconv.EVENT_ROUTER
    assert alert["labels"]["instance"] == target and alert["labels"]["job"] == "executor"
    assert alert["labels"]["severity"] == "warning"
    summary = rules[router_alert]["annotations"]["summary"]
    assert alert["annotations"]["summary"] == summary.replace("{{ $labels.job }}", "executor").replace(
        "{{ $labels.instance }}", target)
    if lost_scrapes:
        assert all(a["status"] in ("firing", "resolved") for a in routed), routed
    else:
        assert len(routed) == 1, f"one executor, one stall: one notification for {router_alert}, got {routed}"

    wrongly_delivered = {a["labels"]["alertname"] for a in webhook.alerts()} & unrelated
    assert not wrongly_delivered, (f"the webhook got alerts the router stall does not explain: {wrongly_delivered}; "
                                   f"Prometheus alerts seen: {seen}")
    assert held <= related, f"Alertmanager holds alerts the router stall does not explain: {held - related}"
    fired_unrelated = unrelated & {name for name, states in seen.items() if "firing" in states}
    assert not fired_unrelated, f"Prometheus fired {fired_unrelated} although only the router stalled: {seen}"
