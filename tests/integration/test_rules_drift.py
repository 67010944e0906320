"""The committed alert rules are exactly what `otel-diag rules` generates from the committed config."""
from __future__ import annotations

import difflib
from pathlib import Path

from otel_diag.cli import rules

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "strategy_config.json"
RULES = ROOT / "collector" / "prometheus" / "liveness_rules.yml"


def test_committed_rules_when_regenerated_from_committed_config_then_identical():
    expected = rules.generate(str(CONFIG))

    committed = RULES.read_text(encoding="utf-8")

    if committed != expected:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(keepends=True), expected.splitlines(keepends=True),
                fromfile=str(RULES.relative_to(ROOT)), tofile="otel-diag rules --config config/strategy_config.json",
            )
        )
        raise AssertionError(
            f"{RULES.relative_to(ROOT)} has drifted from {CONFIG.relative_to(ROOT)}: run `make rules` and commit the result.\n{diff}"
        )
