"""Security: no secret leaves the process, every listener is loopback, state files 0644, no HTML.

Secrets are planted where operators keep them — ``OTEL_EXPORTER_OTLP_HEADERS`` (the collector's
bearer token), exchange API keys in the environment, credentials inside the Jaeger UI URL of the
config file and of ``JAEGER_UI_URL`` — and a full instrumented run then exports through every
path at once: an in-memory span exporter, an in-memory metric reader, OTLP/HTTP to a local
receiver (bodies decoded and scanned), a Prometheus scrape, and the three state files.
"""
from __future__ import annotations

import json
import logging
import os
import re
import stat
import subprocess
import sys
import time
import tomllib
import urllib.request
from typing import Iterable, List

import pytest
import yaml
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_diag
from dashboard import risk_panel
from execution.config import TelemetryConfig
from execution.executor_live import RunHooks, RunOptions, run
from execution.state_v7 import load_runtime_diagnostics_state
from tests.fixtures import diagnostics_state as fx
from tests.fixtures.env import LOOPBACK, clean_env
from tests.integration.wire_helpers import OtlpHttpReceiver

SECRETS = {
    "OTEL_EXPORTER_OTLP_HEADERS": ("authorization=Bearer SECRET123", "SECRET123"),
    "BINANCE_API_KEY": ("SECRETKEY456", "SECRETKEY456"),
    "BINANCE_API_SECRET": ("SECRETSIG789", "SECRETSIG789"),
    "JAEGER_UI_URL": ("http://ops:SECRETPW000@127.0.0.1:16686/?token=SECRETQ111", "SECRETPW000"),
}
CONFIG_SECRET = "SECRETCFG222"
ALL_SECRETS = [needle for _, needle in SECRETS.values()] + ["SECRETQ111", CONFIG_SECRET]


def _strings(value) -> Iterable[str]:
    """Every string (keys included) inside a nested structure of dicts, lists, tuples and OTel values."""
    if isinstance(value, (str, bytes)):
        yield value if isinstance(value, str) else value.decode("utf-8", "replace")
    elif isinstance(value, dict) or hasattr(value, "items"):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for v in value:
            yield from _strings(v)
    elif value is not None:
        yield str(value)


def _leaks(where: str, texts: Iterable[str]) -> List[str]:
    found = []
    for text in texts:
        found += [f"{where}: {secret}" for secret in ALL_SECRETS if secret in text]
    return found


@pytest.fixture
def planted(monkeypatch, tmp_path, repo_root):
    """Secrets in the environment and in the config file; returns the config path."""
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    for name, (value, _) in SECRETS.items():
        monkeypatch.setenv(name, value)
    with open(os.path.join(repo_root, "config", "strategy_config.json"), encoding="utf-8") as fh:
        cfg = json.load(fh)
    cfg["telemetry"]["jaeger_ui_url"] = f"http://admin:{CONFIG_SECRET}@127.0.0.1:16686"
    cfg["telemetry"]["prometheus_port"] = 0
    path = tmp_path / "strategy_config.json"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return str(path)


def test_run_when_secrets_planted_in_env_and_config_then_none_in_spans_metrics_otlp_scrape_or_state_files(
        tmp_path, monkeypatch, planted):
    # Arrange: every export path at once
    spans = InMemorySpanExporter()
    metrics = InMemoryMetricReader()
    scraped: List[str] = []
    collected: List = []
    state_dir = tmp_path / "state"

    def on_cycle(result) -> None:
        if result.index in (60, 119):
            host, port = otel_diag.current().prometheus_address
            with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as resp:
                scraped.append(resp.read().decode("utf-8"))
            collected.append(metrics.get_metrics_data())

    with OtlpHttpReceiver() as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)

        # Act
        summary = run(RunOptions(config_path=planted, state_dir=str(state_dir), cycles=120, scenario="tp_sl_gap",
                                 fault_at=30),
                      RunHooks(span_processors=[SimpleSpanProcessor(spans)], metric_readers=[metrics],
                               on_cycle=on_cycle))
        requests = list(collector.requests)

    # Assert: the planted secrets were live (the collector got its token) ...
    assert summary.cycles == 120 and len(scraped) == 2
    finished = spans.get_finished_spans()
    assert finished and requests
    assert {r.headers.get("authorization") for r in requests} == {"Bearer SECRET123"}
    # ... and appear nowhere in what left the process
    leaks: List[str] = []
    for span in finished:
        leaks += _leaks(f"span {span.name}", _strings([span.name, dict(span.attributes or {}),
                                                       dict(span.resource.attributes),
                                                       [(e.name, dict(e.attributes or {})) for e in span.events],
                                                       span.status.description]))
    assert all(data is not None for data in collected)
    for rm in [rm for data in collected for rm in data.resource_metrics]:
        leaks += _leaks("metric resource", _strings(dict(rm.resource.attributes)))
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                leaks += _leaks(f"metric {m.name}", _strings([m.name, m.description, m.unit]
                                                             + [dict(p.attributes or {}) for p in m.data.data_points]))
    for r in requests:
        leaks += _leaks(f"OTLP body {r.path}", [r.message.SerializeToString().decode("latin-1"), str(r.message)])
    leaks += _leaks("Prometheus scrape", scraped)
    for name in ("diagnostics.json", "positions.json", "journal.jsonl"):
        leaks += _leaks(name, [(state_dir / name).read_text(encoding="utf-8")])
    assert leaks == []
    # the Jaeger link survives, without its credentials
    doc = json.loads((state_dir / "diagnostics.json").read_text(encoding="utf-8"))
    assert doc["service"]["jaeger_ui_url"] == "http://127.0.0.1:16686/"


def test_publish_when_config_jaeger_url_carries_credentials_then_state_file_has_the_link_without_them(
        tmp_path, monkeypatch):
    # Arrange: no JAEGER_UI_URL in the environment, so the config's URL is the one published
    from execution.config import AppConfig
    from execution.state_publish import DiagnosticsPublisher

    monkeypatch.delenv("JAEGER_UI_URL", raising=False)
    otel_diag.configure(clock=lambda: 1_767_571_200.0, env={}, instrument=False)
    cfg = AppConfig(telemetry=TelemetryConfig(jaeger_ui_url=f"https://admin:{CONFIG_SECRET}@jaeger.internal:16686/ui"
                                                            f"?token={CONFIG_SECRET}#frag"))

    # Act
    assert DiagnosticsPublisher(str(tmp_path), cfg, clock=lambda: 1_767_571_200.0).publish()

    # Assert
    text = (tmp_path / "diagnostics.json").read_text(encoding="utf-8")
    assert CONFIG_SECRET not in text
    assert json.loads(text)["service"]["jaeger_ui_url"] == "https://jaeger.internal:16686/ui"


# -- secrets never printed: stderr, stdout, any logger, state files, the panel --------------------------
PRINTED = {  # secret -> where it is planted; none may be printed anywhere
    "SECRETHDR1": "OTEL_EXPORTER_OTLP_HEADERS, a valid entry", "SECRETHDR2": "…HEADERS, an entry with a ';'",
    "SECRETHDR3": "…HEADERS, an entry without '='", "SECRETPW41": "traces endpoint password",
    "SECRETQ42": "traces endpoint query", "SECRETPW43": "metrics endpoint password",
    "SECRETQ44": "metrics endpoint query", "SECRETPW45": "JAEGER_UI_URL password", "SECRETQ46": "JAEGER_UI_URL query",
}
MALFORMED_HEADERS = "authorization=Bearer SECRETHDR1,x-api-key=SECRETHDR2;v1,SECRETHDR3"
JAEGER_WITH_CREDENTIALS = "http://viewer:SECRETPW45@127.0.0.1:16686/?token=SECRETQ46"
DEBUG_EXECUTOR = ("import logging, sys; logging.basicConfig(level=logging.DEBUG); "
                  "from execution.executor_live import main; sys.exit(main(sys.argv[1:]))")


def _with_credentials(endpoint: str, path: str, password: str, token: str) -> str:
    """``endpoint`` (``http://127.0.0.1:port``) with a user and password before the host and a token in the query."""
    return endpoint.replace("http://", f"http://ops:{password}@") + f"{path}?token={token}"


def _printed_secrets(where: str, text: str) -> List[str]:
    return [f"{where}: {secret} ({planted})" for secret, planted in PRINTED.items() if secret in text]


def test_executor_when_headers_malformed_and_urls_carry_credentials_then_no_secret_on_stderr_stdout_or_state_files(
        tmp_path, repo_root):
    # Arrange: OTLP/HTTP and OTLP/gRPC exporters failing against broken collectors on 127.0.0.1, exporting
    # every 100-200 ms, every logger at DEBUG on stderr: each error path of the SDK, requests and urllib3 logs
    from tests.fixtures.collectors import FAST_EXPORT_ENV, BrokenCollectors

    with BrokenCollectors() as down:
        refused_before = down.refusing.requests
        common = clean_env(OTEL_EXPORTER_OTLP_HEADERS=MALFORMED_HEADERS, JAEGER_UI_URL=JAEGER_WITH_CREDENTIALS,
                           **FAST_EXPORT_ENV)
        arms = {
            "http": {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": _with_credentials(down.endpoints["refusing"], "/v1/traces",
                                                                             "SECRETPW41", "SECRETQ42"),
                     "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": _with_credentials(down.endpoints["closed"], "/v1/metrics",
                                                                              "SECRETPW43", "SECRETQ44")},
            "grpc": {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                     "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": _with_credentials(down.endpoints["closed"], "",
                                                                             "SECRETPW41", "SECRETQ42"),
                     "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": down.endpoints["closed"]},
        }
        procs = {arm: subprocess.Popen([sys.executable, "-c", DEBUG_EXECUTOR, "--cycles", "150", "--state-dir",
                                        str(tmp_path / arm)], cwd=repo_root, env={**common, **extra},
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for arm, extra in arms.items()}

        # Act
        results = {arm: (proc.communicate(timeout=90), proc.returncode) for arm, proc in procs.items()}
        refused = down.refusing.requests - refused_before

    # Assert: the runs traded, logged at DEBUG, and reached the refusing collector ...
    assert refused > 0, "the traces exporter never reached the refusing collector"
    printed: List[str] = []
    for arm, ((out, err), code) in results.items():
        assert code == 0, (arm, err[-2000:])
        assert "DEBUG:" in err and "WARNING:" in err, (arm, err[-2000:])
        # ... and no secret was printed, logged or written
        printed += _printed_secrets(f"{arm} stderr", err) + _printed_secrets(f"{arm} stdout", out)
        for folder, _, names in os.walk(tmp_path / arm):
            for name in names:
                with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as fh:
                    printed += _printed_secrets(f"{arm} {name}", fh.read())
    assert printed == []
    # ... while the operator is told which setting is malformed
    assert all("OTEL_EXPORTER_OTLP_HEADERS=(value hidden)" in err for (_, err), _ in results.values())


def test_configure_when_headers_malformed_then_one_warning_names_the_setting_and_no_logger_sees_a_value(
        monkeypatch, caplog):
    # Arrange: the SDK's exporters parse os.environ's headers themselves, and quote a bad entry whole
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", MALFORMED_HEADERS)
    caplog.set_level(logging.DEBUG)
    env = {"OTEL_EXPORTER_OTLP_HEADERS": MALFORMED_HEADERS, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
           "OTEL_METRICS_EXPORTER": "none"}

    # Act
    telemetry = otel_diag.configure(clock=time.time, env=env)
    otel_diag.shutdown(timeout_millis=300)

    # Assert: the valid entry is still sent; the two bad ones are reported once, by setting, values hidden
    assert telemetry.exporters == ["otlp-traces"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "OTEL_EXPORTER_OTLP_HEADERS" in warnings[0], warnings
    assert "2 of 3" in warnings[0], warnings[0]
    assert _printed_secrets("log", caplog.text) == []


def test_logs_when_any_logger_quotes_a_configured_url_secret_then_it_is_masked_in_message_and_traceback(caplog):
    # Arrange: an endpoint with a password and a token; urllib3 logs request lines with their query
    caplog.set_level(logging.DEBUG)
    otel_diag.configure(clock=time.time, env={
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://ops:SECRETPW41@127.0.0.1:9/v1/traces?token=SECRETQ42",
        "OTEL_METRICS_EXPORTER": "none"})

    # Act
    logging.getLogger("urllib3.connectionpool").debug('"POST %s HTTP/1.1" 503 0', "/v1/traces?token=SECRETQ42")
    try:
        raise ConnectionError("cannot reach ops:SECRETPW41@127.0.0.1:9")
    except ConnectionError:
        logging.getLogger("an.application").warning("export failed", exc_info=True)

    # Assert
    assert _printed_secrets("log", caplog.text) == []
    assert '"POST /v1/traces?*** HTTP/1.1" 503 0' in caplog.text  # the whole query is the secret
    assert "ConnectionError: cannot reach ops:***@127.0.0.1:9" in caplog.text


@pytest.mark.parametrize("url, shown", [
    ("http://ops:pw@127.0.0.1:16686/?token=t#frag", "http://127.0.0.1:16686/"),
    ("https://jaeger.internal:16686/ui", "https://jaeger.internal:16686/ui"),
    ("ops:pw@collector:4317", "collector:4317"),  # gRPC style, no scheme
    ("http://ops:pw@/path", None),                # no host
    ("http://[::1", None),                        # does not parse
    ("", None),
])
def test_url_without_credentials_when_shown_then_only_scheme_host_port_and_path(url, shown):
    from otel_diag.redact import url_without_credentials

    assert url_without_credentials(url) == shown


def test_dashboard_page_when_jaeger_ui_url_carries_credentials_then_neither_caption_nor_links_show_them(
        tmp_path, monkeypatch, repo_root):
    from streamlit.testing.v1 import AppTest

    # Arrange
    fx.write_state(tmp_path / "state" / "executor-a", fx.alerting(time.time()))
    monkeypatch.setenv("OTEL_DIAG_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("OTEL_DIAG_REFRESH_SECONDS", "30")
    monkeypatch.setenv("JAEGER_UI_URL", JAEGER_WITH_CREDENTIALS)

    # Act
    at = AppTest.from_file(os.path.join(repo_root, "dashboard", "app.py"), default_timeout=30).run()

    # Assert
    assert not at.exception, [e.value for e in at.exception]
    texts = [str(e.value) for kind in ("markdown", "caption", "title", "subheader", "info", "warning", "error")
             for e in getattr(at, kind)]
    for table in at.table:
        texts += [str(v) for row in table.value.itertuples(index=False) for v in row]
    assert texts and "127.0.0.1:16686" in " ".join(texts)  # the Jaeger address is shown ...
    assert _printed_secrets("panel", "\n".join(texts)) == []  # ... without its credentials or token


# -- listeners ---------------------------------------------------------------------------------------
def test_prometheus_endpoint_when_configured_with_port_0_or_by_env_then_binds_loopback_only():
    assert TelemetryConfig().prometheus_host == LOOPBACK
    for kwargs in ({"prometheus_port": 0, "env": {}},
                   {"env": {"OTEL_METRICS_EXPORTER": "prometheus", "OTEL_EXPORTER_PROMETHEUS_PORT": "0"}}):
        telemetry = otel_diag.configure(clock=time.time, **kwargs)
        try:
            host, port = telemetry.prometheus_address
            assert host == LOOPBACK and port > 0
        finally:
            otel_diag.shutdown(timeout_millis=2_000)


def test_shipped_config_when_read_then_no_listener_beyond_loopback(repo_root):
    with open(os.path.join(repo_root, "config", "strategy_config.json"), encoding="utf-8") as fh:
        telemetry = json.load(fh).get("telemetry", {})
    assert telemetry.get("prometheus_host", LOOPBACK) == LOOPBACK


def test_dashboard_command_line_and_streamlit_config_when_read_then_bind_loopback(repo_root):
    with open(os.path.join(repo_root, "Makefile"), encoding="utf-8") as fh:
        makefile = fh.read()
    recipe = re.search(r"^dashboard:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe and "streamlit run" in recipe.group(1)
    assert re.search(r"--server\.address[ =]127\.0\.0\.1\b", recipe.group(1)), recipe.group(1)
    with open(os.path.join(repo_root, ".streamlit", "config.toml"), "rb") as fh:
        assert tomllib.load(fh)["server"]["address"] == LOOPBACK


def _env_default(value: str) -> str:
    """``${env:NAME:-default}`` -> default (the value when no variable overrides it)."""
    match = re.fullmatch(r"\$\{env:[A-Za-z_][A-Za-z0-9_]*:-(.*)\}", value.strip())
    return match.group(1) if match else value


def test_collector_config_when_read_then_every_receiver_and_server_defaults_to_loopback(repo_root):
    with open(os.path.join(repo_root, "collector", "otelcol-config.yaml"), encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh)
    listeners = []
    for name, receiver in (cfg.get("receivers") or {}).items():
        for proto_name, proto in ((receiver or {}).get("protocols") or {"": receiver}).items():
            listeners.append((f"receivers.{name}.{proto_name}", (proto or {}).get("endpoint")))
    for name, ext in (cfg.get("extensions") or {}).items():
        listeners.append((f"extensions.{name}", (ext or {}).get("endpoint")))
    for name, exp in (cfg.get("exporters") or {}).items():
        if name.split("/")[0] == "prometheus":  # a server others scrape
            listeners.append((f"exporters.{name}", exp.get("endpoint")))
    for reader in (((cfg.get("service") or {}).get("telemetry") or {}).get("metrics") or {}).get("readers", []):
        prom = (((reader or {}).get("pull") or {}).get("exporter") or {}).get("prometheus")
        if prom:
            listeners.append(("service.telemetry.metrics", f"{_env_default(str(prom.get('host')))}:{prom.get('port')}"))

    assert any(where.startswith("receivers.otlp") for where, _ in listeners)
    for where, endpoint in listeners:
        assert endpoint is not None, f"{where}: no endpoint, the Collector would pick its own default"
        host = _env_default(str(endpoint)).rsplit(":", 1)[0]
        assert host == LOOPBACK, f"{where}: {endpoint}"


# -- state file modes --------------------------------------------------------------------------------
@pytest.fixture
def permissive_umask():
    previous = os.umask(0)
    yield
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_state_files_when_written_under_a_permissive_umask_then_0644_or_tighter(tmp_path, permissive_umask):
    run(RunOptions(state_dir=str(tmp_path), cycles=30), RunHooks(configure_kwargs={"env": {}}))

    for name in ("diagnostics.json", "positions.json"):
        assert _mode(tmp_path / name) & 0o133 == 0, (name, oct(_mode(tmp_path / name)))


def test_journal_when_written_under_the_usual_umask_then_0644_or_tighter(tmp_path):
    previous = os.umask(0o022)
    try:
        run(RunOptions(state_dir=str(tmp_path), cycles=5, instrument=False))
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "journal.jsonl") & 0o133 == 0


def test_journal_when_written_under_a_permissive_umask_then_0644_or_tighter(tmp_path, permissive_umask):
    run(RunOptions(state_dir=str(tmp_path), cycles=5, instrument=False))
    assert _mode(tmp_path / "journal.jsonl") & 0o133 == 0


# -- never HTML ----------------------------------------------------------------------------------------
HOSTILE = ["<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "[x](javascript:alert(3))",
           "**bold** _it_ `code` # h1", "<a href='http://evil.example'>x</a>", "$x$ :red[y] ~~s~~"]


def _poisoned(now: float) -> dict:
    """A valid document with markup in every free-text slot: service fields, map keys, symbol lists,
    plus one unparseable timestamp, so the loader's problem report (shown in the banner) quotes markup too."""
    doc = fx.mismatch(now)
    svc = doc["service"]
    for i, key in enumerate(("name", "instance_id", "environment", "scenario", "pace", "state")):
        svc[key] = HOSTILE[i % len(HOSTILE)]
    svc["jaeger_ui_url"] = "javascript:alert(4)"
    vc = doc["runtime_diagnostics"]["veto_counters"]
    vc["by_reason_symbol"] = {h: {HOSTILE[(i + 1) % len(HOSTILE)]: i + 1} for i, h in enumerate(HOSTILE)}
    vc["by_reason"] = {h: i + 1 for i, h in enumerate(HOSTILE)}
    vc["by_symbol"] = {h: i + 1 for i, h in enumerate(HOSTILE)}
    vc["router_events"] = {h: 1 for h in HOSTILE}
    ex = doc["runtime_diagnostics"]["exit_pipeline"]
    ex["underwater_without_tp_sl_symbols"] = list(HOSTILE)
    ex["missing_tp_sl_symbols"] = list(HOSTILE)
    return doc


_UNESCAPED = re.compile(r"(?<!\\)[<>]|(?<!\\)\]\((?!https?://127)")  # raw angle brackets, or a live [x](link)


def test_panel_helpers_when_every_string_hostile_then_only_escaped_markdown(tmp_path):
    now = time.time()
    for doc in (_poisoned(now), {**_poisoned(now), "written_at": HOSTILE[0]}):
        block = load_runtime_diagnostics_state(fx.write_state(tmp_path / "state", doc), now=now)
        texts = [risk_panel.header_caption(block), risk_panel.status_badge(block)]
        texts += [risk_panel.banner(block).text] if risk_panel.banner(block) else []
        texts += [f"{r.label} {r.value}" for r in risk_panel.exit_health_rows(block)]
        texts += [f"{r.label} {r.text} {r.threshold}" for r in risk_panel.liveness_rows(block, "javascript:alert(5)")]
        texts += [risk_panel.veto_totals(block)["last_veto"]]
        for text in texts:
            assert not _UNESCAPED.search(text), text
        assert all(r.trace_url is None for r in risk_panel.liveness_rows(block, "javascript:alert(5)"))


def test_dashboard_page_when_state_files_and_folder_names_hostile_then_no_html_anywhere(
        tmp_path, monkeypatch, repo_root):
    from streamlit.testing.v1 import AppTest

    # Arrange: two executors whose folder names are markup too
    now = time.time()
    root = tmp_path / "state"
    fx.write_state(root / "<img src=x onerror=alert(1)>", _poisoned(now))
    fx.write_state(root / "**x** [y](javascript:alert(2))", {**_poisoned(now), "written_at": HOSTILE[0]})
    monkeypatch.setenv("OTEL_DIAG_STATE_DIR", str(root))
    monkeypatch.setenv("OTEL_DIAG_REFRESH_SECONDS", "30")
    monkeypatch.delenv("JAEGER_UI_URL", raising=False)

    # Act
    at = AppTest.from_file(os.path.join(repo_root, "dashboard", "app.py"), default_timeout=30).run()

    # Assert
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("html")) == 0
    markdown_like = list(at.markdown) + list(at.caption) + list(at.subheader) + list(at.title)
    assert markdown_like and not [m.value for m in markdown_like if getattr(m.proto, "allow_html", False)]
    texts = [m.value for m in markdown_like] + [e.value for e in at.error] + [i.value for i in at.info]
    for table in at.table:
        texts += [str(v) for row in table.value.itertuples(index=False) for v in row]
    for text in texts:
        assert not _UNESCAPED.search(text), text
    assert any("script" in t for t in texts) and any("onerror" in t for t in texts)  # shown, as text


def test_dashboard_sources_when_scanned_then_no_raw_html_api(repo_root):
    folder = os.path.join(repo_root, "dashboard")
    for name in os.listdir(folder):
        if name.endswith(".py"):
            with open(os.path.join(folder, name), encoding="utf-8") as fh:
                source = fh.read()
            for api in ("unsafe_allow_html", "st.html", "components.html", "streamlit.components"):
                assert api not in source, f"dashboard/{name} uses {api}"
