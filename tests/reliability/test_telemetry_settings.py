"""Bad telemetry settings never stop trading: one warning line naming the setting, then the default (or that part off).

Each case runs the real executor (``python -m execution``) with one bad OTel setting in its environment, or
one bad ``telemetry.*`` key in its config file, and OTLP pointed at a healthy receiver of its own on 127.0.0.1
(so every exporter, batch processor and reader is built). Every run must exit 0, write a journal
byte-identical to the module's one ``--no-instrument`` run, and print exactly one line on stderr that names
the setting — with its value, unless the setting may carry a secret — and no traceback. Where the setting
falls back to its default, the telemetry still arrives at the receiver.

The runs are independent processes; the module starts them four at a time (``_WORKERS``) and each test
reads its own.
"""
from __future__ import annotations

import os
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, NamedTuple, Optional, Tuple

import pytest

from tests.fixtures.cli import run_module
from tests.fixtures.config import shipped_config
from tests.fixtures.env import LOOPBACK, clean_env
from tests.integration.wire_helpers import OtlpHttpReceiver

CYCLES = 60
_WORKERS = 4
BUSY = "{busy}"                 # replaced by a port a listening socket holds on 127.0.0.1
UNRESOLVABLE = "no-such-host.invalid"  # RFC 6761: never resolves
TRACES, METRICS = "/v1/traces", "/v1/metrics"
BOTH = (TRACES, METRICS)


@dataclass(frozen=True)
class Case:
    """One bad setting: where it goes, what the warning line must name and show, what still arrives over OTLP."""

    id: str
    env: Dict[str, str] = field(default_factory=dict)      # on top of OTEL_EXPORTER_OTLP_ENDPOINT=<receiver>
    config: Dict[str, object] = field(default_factory=dict)  # telemetry.* keys of the config file
    setting: str = ""
    shown: Optional[str] = None   # the value the line quotes; None: a secret-bearing value, never shown
    arrives: Tuple[str, ...] = BOTH
    hidden: Tuple[str, ...] = ()  # strings that must not appear on stderr

    def __post_init__(self) -> None:
        if not self.setting:  # one env var, its name and value
            ((name, value),) = self.env.items()
            object.__setattr__(self, "setting", name)
            object.__setattr__(self, "shown", value)


PROMETHEUS = {"OTEL_METRICS_EXPORTER": "prometheus"}
CASES = [
    Case("interval-zero", {"OTEL_METRIC_EXPORT_INTERVAL": "0"}),
    Case("interval-negative", {"OTEL_METRIC_EXPORT_INTERVAL": "-5"}),
    Case("interval-text", {"OTEL_METRIC_EXPORT_INTERVAL": "soon"}),
    Case("metric-timeout-text", {"OTEL_METRIC_EXPORT_TIMEOUT": "later"}),
    Case("schedule-delay-zero", {"OTEL_BSP_SCHEDULE_DELAY": "0"}),
    Case("schedule-delay-text", {"OTEL_BSP_SCHEDULE_DELAY": "abc"}),
    Case("batch-zero", {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "0"}),
    Case("batch-text", {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "many"}),
    Case("batch-over-queue", {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "5000"}),
    Case("queue-negative", {"OTEL_BSP_MAX_QUEUE_SIZE": "-1"}),
    Case("queue-text", {"OTEL_BSP_MAX_QUEUE_SIZE": "lots"}),
    Case("bsp-timeout-text", {"OTEL_BSP_EXPORT_TIMEOUT": "abc"}),
    Case("otlp-timeout-negative", {"OTEL_EXPORTER_OTLP_TIMEOUT": "-1"}),
    Case("traces-exporter-unknown", {"OTEL_TRACES_EXPORTER": "zipkin"}),
    Case("metrics-exporter-unknown", {"OTEL_METRICS_EXPORTER": "statsd"}),
    Case("protocol-unknown", {"OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"}),
    Case("grpc-compression-unknown", {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_COMPRESSION": "zstdx"},
         setting="OTEL_EXPORTER_OTLP_COMPRESSION", shown="zstdx", arrives=()),  # the gRPC exporter raises
    Case("endpoint-port-text", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:notaport"}, arrives=()),
    Case("endpoint-not-a-url", {"OTEL_EXPORTER_OTLP_ENDPOINT": "not a url"}, arrives=()),
    Case("endpoint-scheme", {"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://127.0.0.1:4318"}, arrives=()),
    Case("endpoint-unresolvable", {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{UNRESOLVABLE}:4318"}, arrives=()),
    Case("traces-endpoint-with-credentials",
         {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://ops:SECRETPW31@127.0.0.1:notaport/v1/traces?token=SECRETQ32"},
         setting="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", shown=None, arrives=(METRICS,),
         hidden=("SECRETPW31", "SECRETQ32")),
    Case("prometheus-port-text", {**PROMETHEUS, "OTEL_EXPORTER_PROMETHEUS_PORT": "abc"},
         setting="OTEL_EXPORTER_PROMETHEUS_PORT", shown="abc", arrives=(TRACES,)),
    Case("prometheus-port-busy", {**PROMETHEUS, "OTEL_EXPORTER_PROMETHEUS_PORT": BUSY},
         setting="OTEL_EXPORTER_PROMETHEUS_PORT", shown=BUSY, arrives=(TRACES,)),
    Case("prometheus-host-unresolvable", {**PROMETHEUS, "OTEL_EXPORTER_PROMETHEUS_PORT": "0",
                                          "OTEL_EXPORTER_PROMETHEUS_HOST": UNRESOLVABLE},
         setting="OTEL_EXPORTER_PROMETHEUS_HOST", shown=UNRESOLVABLE, arrives=(TRACES,)),
    Case("config-prometheus-port-busy", config={"prometheus_port": BUSY},
         setting="prometheus_port", shown=BUSY),
    Case("config-prometheus-host-unresolvable", config={"prometheus_port": 0, "prometheus_host": UNRESOLVABLE},
         setting="prometheus_host", shown=UNRESOLVABLE),
]


class Run(NamedTuple):
    code: int
    stdout: str
    stderr: str
    journal: bytes
    arrived: Tuple[str, ...]  # the OTLP paths the run's receiver got requests on


def _executor(*args: str, env: Dict[str, str]) -> subprocess.CompletedProcess:
    return run_module("execution", "--cycles", str(CYCLES), *args, env=env)


def _config_file(folder, telemetry: Dict[str, object]) -> list:
    return ["--config", shipped_config(folder, telemetry=telemetry)] if telemetry else []


def _run_case(case: Case, folder, busy: str) -> Run:
    with OtlpHttpReceiver() as receiver:
        env = clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint)
        env.update({k: v.replace(BUSY, busy) for k, v in case.env.items()})
        config = {k: int(busy) if v == BUSY else v for k, v in case.config.items()}
        state_dir = os.path.join(str(folder), "state")
        proc = _executor(*_config_file(folder, config), "--state-dir", state_dir, env=env)
        arrived = tuple(p for p in BOTH if receiver.received(p))
    journal = os.path.join(state_dir, "journal.jsonl")
    if os.path.exists(journal):  # absent when the run died before its first trade
        with open(journal, "rb") as fh:
            return Run(proc.returncode, proc.stdout, proc.stderr, fh.read(), arrived)
    return Run(proc.returncode, proc.stdout, proc.stderr, b"", arrived)


@pytest.fixture(scope="module")
def busy_port():
    """A port a listening socket holds on 127.0.0.1 for the whole module."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen(1)
        yield str(sock.getsockname()[1])


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> bytes:
    """The journal of the same run with no telemetry at all."""
    state_dir = tmp_path_factory.mktemp("baseline")
    proc = _executor("--no-instrument", "--state-dir", str(state_dir), env=clean_env())
    assert proc.returncode == 0, proc.stderr
    return (state_dir / "journal.jsonl").read_bytes()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, busy_port) -> Dict[str, Run]:
    """Every case's run (and a control with good settings), run side by side."""
    cases = [Case("control", {"OTEL_SERVICE_NAME": "executor"}), *CASES]
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        futures = {c.id: pool.submit(_run_case, c, tmp_path_factory.mktemp(c.id), busy_port) for c in cases}
        return {name: future.result() for name, future in futures.items()}


def test_executor_when_telemetry_settings_good_then_no_warning_and_the_journal_of_an_uninstrumented_run(
        runs, baseline):
    control = runs["control"]

    assert control.code == 0, control.stderr
    assert control.stderr == ""
    assert control.journal == baseline
    assert control.arrived == BOTH


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_executor_when_one_telemetry_setting_bad_then_one_warning_line_naming_it_and_the_same_journal(
        runs, baseline, busy_port, case):
    # Arrange + Act: the module ran it
    run = runs[case.id]

    # Assert: trading went on untouched
    assert run.code == 0, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert run.journal == baseline, "a bad telemetry setting changed what the engine traded"
    # ... one line says what was wrong, naming the setting (and its value, unless secret-bearing)
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert case.setting in lines[0], lines[0]
    if case.shown is not None:
        assert case.shown.replace(BUSY, busy_port) in lines[0], lines[0]
    for secret in case.hidden:
        assert secret not in run.stderr and secret not in run.stdout
    # ... and what falls back to its default still exports
    assert run.arrived == case.arrives
