"""Fixtures for the training tests (helpers live in tests/harness.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch.distributed as dist
from harness import free_port, make_dataset


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "uniform_tiny")


@pytest.fixture(scope="module")
def process_group():
    """A one-rank gloo process group in this process, for code that all ranks of a run call."""
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1
    )
    yield
    dist.destroy_process_group()
