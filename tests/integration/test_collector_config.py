"""The Collector config is structurally sound: defined components, loopback binds, processor order, no literal secrets.

No otelcol binary is installable here, so tests/integration/collector_check.py stands in for
`otelcol-contrib validate`; the negative tests prove each check complains.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tests.integration.collector_check import check_collector_config, load_collector_config, resolve_env_default

CONFIG = Path(__file__).resolve().parents[2] / "collector" / "otelcol-config.yaml"


@pytest.fixture(scope="module")
def shipped() -> dict:
    return load_collector_config(str(CONFIG))


@pytest.fixture
def config(shipped) -> dict:
    return copy.deepcopy(shipped)


def _problems_mentioning(config: dict, *needles: str) -> list:
    problems = check_collector_config(config)
    assert problems, "the checker found nothing wrong"
    matching = [p for p in problems if all(n in p for n in needles)]
    assert matching, f"no problem mentions {needles}: {problems}"
    return matching


# -- the shipped config -----------------------------------------------------------------
def test_shipped_config_when_checked_then_no_problem(shipped):
    assert check_collector_config(shipped) == []


def test_shipped_config_when_read_then_has_the_promised_components(shipped):
    pipelines = shipped["service"]["pipelines"]

    assert set(shipped["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}
    assert pipelines["traces"]["exporters"][0] == "otlp/jaeger"
    assert "prometheus" in pipelines["metrics"]["exporters"]
    assert shipped["service"]["extensions"] == ["health_check"]
    for pipeline in pipelines.values():
        assert pipeline["processors"] == ["memory_limiter", "batch"]


def test_shipped_config_when_defaults_resolved_then_otlp_ports_4317_4318_on_loopback(shipped):
    protocols = shipped["receivers"]["otlp"]["protocols"]

    assert resolve_env_default(protocols["grpc"]["endpoint"]) == "127.0.0.1:4317"
    assert resolve_env_default(protocols["http"]["endpoint"]) == "127.0.0.1:4318"
    assert resolve_env_default(shipped["exporters"]["prometheus"]["endpoint"]) == "127.0.0.1:8889"
    assert resolve_env_default(shipped["extensions"]["health_check"]["endpoint"]).startswith("127.0.0.1:")


def test_shipped_config_when_read_then_metric_expiration_well_above_push_and_scrape_intervals(shipped):
    expiration = resolve_env_default(shipped["exporters"]["prometheus"]["metric_expiration"])

    assert expiration.endswith("m") and int(expiration[:-1]) >= 5  # >= 5 x the 60 s OTLP push interval


# -- negative cases: the same checker complains -----------------------------------------
def test_check_when_pipeline_names_undefined_exporter_then_complains(config):
    config["service"]["pipelines"]["traces"]["exporters"].append("otlp/tempo")

    _problems_mentioning(config, "traces.exporters", "otlp/tempo", "not defined")


def test_check_when_pipeline_names_undefined_receiver_or_processor_then_complains(config):
    config["service"]["pipelines"]["metrics"]["receivers"] = ["prometheus"]
    config["service"]["pipelines"]["metrics"]["processors"] = ["memory_limiter", "filter", "batch"]

    _problems_mentioning(config, "metrics.receivers", "'prometheus'")
    _problems_mentioning(config, "metrics.processors", "'filter'")


def test_check_when_service_extension_undefined_then_complains(config):
    config["service"]["extensions"].append("zpages")

    _problems_mentioning(config, "service.extensions", "zpages")


def test_check_when_pipeline_has_no_exporter_then_complains(config):
    config["service"]["pipelines"]["traces"]["exporters"] = []

    _problems_mentioning(config, "traces.exporters", "at least one")


@pytest.mark.parametrize(
    "endpoint",
    ["0.0.0.0:4317", ":4317", "${env:OTLP_GRPC_ENDPOINT:-0.0.0.0:4317}", "${env:OTLP_GRPC_ENDPOINT:-:4317}", "[::]:4317"],
)
def test_check_when_receiver_binds_every_interface_by_default_then_complains(config, endpoint):
    config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] = endpoint

    _problems_mentioning(config, "receivers.otlp.protocols.grpc.endpoint", "every interface")


def test_check_when_endpoint_env_has_no_default_then_complains(config):
    config["receivers"]["otlp"]["protocols"]["http"]["endpoint"] = "${env:OTLP_HTTP_ENDPOINT}"

    _problems_mentioning(config, "protocols.http.endpoint", "no default")


def test_check_when_receiver_protocol_has_no_endpoint_then_complains(config):
    config["receivers"]["otlp"]["protocols"]["http"] = None

    _problems_mentioning(config, "protocols.http", "no endpoint")


def test_check_when_prometheus_exporter_or_health_check_bind_wildcard_then_complains(config):
    config["exporters"]["prometheus"]["endpoint"] = "0.0.0.0:8889"
    config["extensions"]["health_check"]["endpoint"] = "${env:OTELCOL_HEALTH_ENDPOINT:-:13133}"

    _problems_mentioning(config, "exporters.prometheus.endpoint")
    _problems_mentioning(config, "extensions.health_check.endpoint")


def test_check_when_telemetry_host_wildcard_then_complains(config):
    reader = config["service"]["telemetry"]["metrics"]["readers"][0]
    reader["pull"]["exporter"]["prometheus"]["host"] = "0.0.0.0"

    _problems_mentioning(config, "service.telemetry", "host")


def test_check_when_env_endpoint_opened_explicitly_then_fine(config):
    # Opening a port is the operator's decision at run time, through the environment.
    config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] = "${env:OTLP_GRPC_ENDPOINT:-localhost:4317}"

    assert check_collector_config(config) == []


@pytest.mark.parametrize("order", [["batch", "memory_limiter"], ["batch"], ["memory_limiter"], [], ["memory_limiter", "batch", "attributes"]])
def test_check_when_processor_order_wrong_then_complains(config, order):
    config["processors"]["attributes"] = {"actions": []}
    config["service"]["pipelines"]["metrics"]["processors"] = order

    _problems_mentioning(config, "service.pipelines.metrics.processors", "must come")


def test_check_when_named_processors_in_order_then_fine(config):
    config["processors"]["memory_limiter/tight"] = {"check_interval": "1s", "limit_mib": 64}
    config["processors"]["batch/small"] = {"timeout": "1s"}
    config["service"]["pipelines"]["traces"]["processors"] = ["memory_limiter/tight", "batch/small"]

    assert check_collector_config(config) == []


@pytest.mark.parametrize(
    "value",
    ["Bearer abc123", "abc123", "${env:JAEGER_TOKEN:-abc123}", "Bearer ${env:JAEGER_TOKEN:-abc123}", "x${env:JAEGER_TOKEN}y"],
)
def test_check_when_header_secret_is_literal_then_complains(config, value):
    config["exporters"]["otlp/jaeger"]["headers"] = {"authorization": value}

    problems = _problems_mentioning(config, "exporters.otlp/jaeger.headers.authorization")
    assert not any("abc123" in p for p in problems), "a problem message must never echo the secret"


@pytest.mark.parametrize("value", ["${env:JAEGER_AUTHORIZATION}", "Bearer ${env:JAEGER_TOKEN}", "${env:JAEGER_TOKEN:-}"])
def test_check_when_header_secret_is_env_reference_then_fine(config, value):
    config["exporters"]["otlp/jaeger"]["headers"] = {"authorization": value}

    assert check_collector_config(config) == []


@pytest.mark.parametrize("key", ["api_key", "token", "password", "client_secret"])
def test_check_when_secret_key_is_literal_anywhere_then_complains(config, key):
    config["extensions"]["bearertokenauth"] = {key: "s3cr3t"}
    config["service"]["extensions"].append("bearertokenauth")

    _problems_mentioning(config, f"extensions.bearertokenauth.{key}", "literally")


def test_check_when_secret_path_key_is_a_file_then_fine(config):
    config["extensions"]["bearertokenauth"] = {"filename": "/run/secrets/token", "token_file": "/run/secrets/token"}
    config["service"]["extensions"].append("bearertokenauth")

    assert check_collector_config(config) == []
