"""A sample: its MDS columns (ARCHITECTURE.md) and the canonical JSON of its JSON columns.

Importing this module registers the columns' encodings (`phyworld.data.codec`) with
mosaicml-streaming, so whoever knows the columns can also decode them.
"""

from __future__ import annotations

import json
from typing import Any

import phyworld.data.codec  # noqa: F401  (registers video_zstd and float32_zstd)

COLUMNS: dict[str, str] = {
    "id": "str",
    "scenario": "str",
    "split": "str",
    "level": "str",
    "frames": "video_zstd",
    "positions": "float32_zstd",
    "velocities": "float32_zstd",
    "angles": "float32_zstd",
    "objects": "json",
    "params": "json",
}


def to_json(obj: Any) -> str:
    """Canonical JSON (sorted keys, no spaces) so identical samples give identical bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
