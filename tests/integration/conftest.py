"""Fixtures shared by the integration tests."""
from __future__ import annotations

import pytest

from tests.fixtures.schema import schema_validator


@pytest.fixture(scope="module")
def validator():
    """docs/runtime_diagnostics.schema.json as a validator (see tests/fixtures/schema.py)."""
    return schema_validator()
