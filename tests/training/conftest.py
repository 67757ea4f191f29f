"""Fixtures for the training tests (helpers live in tests/harness.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import make_dataset


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "uniform_tiny")
