"""The layering contracts of pyproject.toml's [tool.importlinter] hold (import-linter's `lint-imports`).

The instrumentation core imports neither the engine, the dashboard nor the tools in
otel_diag.cli; the engine imports no telemetry outside its four bridges; the dashboard
imports no telemetry; the engine imports neither the tools nor the dashboard.
"""
from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_layering_contracts_when_linted_then_all_kept():
    lint_imports = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    assert os.path.exists(lint_imports), f"{lint_imports} missing: install the dev extra (pip install -e '.[dev]')"
    done = subprocess.run([lint_imports, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"lint-imports exited {done.returncode}:\n{done.stdout}\n{done.stderr}"


def _modules_loaded_by(statement: str, prefixes: tuple) -> list:
    code = f"import sys; {statement}; print(sorted(m for m in sys.modules if m.startswith({prefixes!r})))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return eval(done.stdout)  # a printed list of str


def test_package_when_a_leaf_module_imported_then_no_opentelemetry_loaded():
    """The dashboard may import otel_diag.redact because the package imports its names on first use."""
    assert _modules_loaded_by("import otel_diag.redact", ("opentelemetry", "wrapt")) == []


def test_package_when_a_name_is_used_then_it_is_the_defining_modules_object():
    code = ("import otel_diag, otel_diag.sdk, otel_diag.wrappers, otel_diag.semconv; "
            "from otel_diag import configure; "
            "assert configure is otel_diag.sdk.configure is otel_diag.configure; "
            "assert otel_diag.traced_event is otel_diag.wrappers.traced_event; "
            "assert otel_diag.semconv is sys.modules['otel_diag.semconv']; "
            "assert set(otel_diag.__all__) <= set(dir(otel_diag)); "
            "[getattr(otel_diag, n) for n in otel_diag.__all__]")
    assert _modules_loaded_by(code, ("otel_diag.sdk",)) == ["otel_diag.sdk"]
    done = subprocess.run([sys.executable, "-c", "import otel_diag; otel_diag.no_such_name"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert "has no attribute 'no_such_name'" in done.stderr


def test_instrumentor_when_imported_then_no_sdk_exporter_or_product_tool_loaded():
    """Like a contrib instrumentation: the API and opentelemetry-instrumentation only (the host brings the SDK)."""
    loaded = _modules_loaded_by("import otel_diag.instrumentor",
                                ("opentelemetry.sdk", "opentelemetry.exporter", "prometheus_client", "jsonschema",
                                 "rich", "streamlit", "altair", "execution"))
    assert loaded == []


def test_distribution_when_installed_then_core_is_the_instrumentation_and_the_panel_an_extra():
    from importlib.metadata import entry_points, requires

    from packaging.requirements import Requirement

    from otel_diag.package import ENTRY_POINT_NAME

    core, extras = set(), {}
    for line in requires("otel-diag"):
        req = Requirement(line)
        extra = next((e for e in ("dashboard", "auto", "dev") if req.marker and req.marker.evaluate({"extra": e})), None)
        (extras.setdefault(extra, set()) if extra else core).add(req.name.lower())
    assert {"opentelemetry-api", "opentelemetry-sdk", "opentelemetry-exporter-otlp", "opentelemetry-exporter-prometheus",
            "opentelemetry-instrumentation", "wrapt"} <= core
    assert not core & {"streamlit", "altair", "playwright", "opentelemetry-distro"}
    assert {"streamlit", "altair"} <= extras["dashboard"] and "opentelemetry-distro" in extras["auto"]
    (point,) = [p for p in entry_points(group="opentelemetry_instrumentor") if p.value.startswith("otel_diag.")]
    assert point.name == ENTRY_POINT_NAME and point.load().__name__ == "ExecutionInstrumentor"
