"""promtool accepts the sample Prometheus config, the generated rules and their unit tests."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from otel_diag.cli import rules

pytestmark = pytest.mark.prometheus

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "collector" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: `make setup` installs Debian's prometheus package")
    return path


def _promtool(promtool: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([promtool, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    return result


def test_promtool_check_config_when_sample_prometheus_yml_then_valid(promtool):
    result = _promtool(promtool, "check", "config", "prometheus.yml")

    assert "liveness_rules.yml" in result.stdout


def test_promtool_check_rules_when_generated_rules_then_valid(promtool):
    result = _promtool(promtool, "check", "rules", "liveness_rules.yml")

    count = (PROMETHEUS_DIR / "liveness_rules.yml").read_text(encoding="utf-8").count("- alert: ")
    assert count > 0 and f"SUCCESS: {count} rules found" in result.stdout


def test_promtool_test_rules_when_unit_tests_then_all_pass(promtool):
    result = _promtool(promtool, "test", "rules", "liveness_rules.test.yml")

    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    "diagnostics",
    [
        {"liveness": {"enabled": False}},
        {"liveness": {"max_idle_router_events_seconds": None, "max_idle_exits_seconds": 0, "max_idle_exit_scans_seconds": 7.5}},
        {"enabled": False},
        {"liveness": {"max_symbol_data_age_seconds": None, "max_symbol_price_frozen_seconds": 0.5}},
        {"liveness": {"max_symbol_data_age_seconds": 2.5, "max_symbol_price_frozen_seconds": None}},
    ],
    ids=["liveness-disabled", "null-zero-and-fractional-thresholds", "diagnostics-disabled",
         "symbol-no-bars-null-fractional-price-frozen", "symbol-fractional-no-bars-price-frozen-null"],
)
def test_promtool_check_rules_when_other_configs_then_generated_rules_valid(promtool, tmp_path, diagnostics):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"diagnostics": diagnostics}), encoding="utf-8")
    generated = tmp_path / "rules.yml"
    generated.write_text(rules.generate(str(config), "30s"), encoding="utf-8")

    result = subprocess.run([promtool, "check", "rules", str(generated)], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr
