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
