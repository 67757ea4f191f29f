"""The one sha256 helper: datasets, checkpoints and downloaded weights are checked with it."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a local file, streamed (never the whole file in memory)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def sha256_bytes(data: bytes) -> str:
    """The hex sha256 of bytes in memory (a shard or index just read)."""
    return hashlib.sha256(data).hexdigest()
