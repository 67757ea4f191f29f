"""A run directory's layout, as training writes it and eval and the orchestrators read it.

    RUN/checkpoints/step_XXXXXXXX/   one checkpoint (`training.checkpoint` writes and verifies it)
        meta.json                    its step, layout and loader state
        weights.pt                   consolidated fp32 {"model", "ema"}
    RUN/checkpoints/latest           the name of the newest complete checkpoint
    RUN/eval/metrics.jsonl           one record per (checkpoint, eval set)

Only names and the step: whether a checkpoint is complete and intact is `training.checkpoint`'s.
"""

from __future__ import annotations

import json
from pathlib import Path

CHECKPOINTS = "checkpoints"
LATEST = "latest"
META = "meta.json"
WEIGHTS = "weights.pt"


def step_dir(run_dir: str | Path, step: int) -> Path:
    """RUN/checkpoints/step_XXXXXXXX."""
    return Path(run_dir) / CHECKPOINTS / f"step_{step:08d}"


def checkpoint_step(path: str | Path) -> int:
    """The training step of checkpoint directory `path`: its meta.json, else its name."""
    meta = Path(path) / META
    if meta.is_file():
        return int(json.loads(meta.read_text())["step"])
    return int(Path(path).name.rsplit("_", 1)[-1])


def latest_step(run_dir: str | Path) -> int:
    """The step of the checkpoint RUN/checkpoints/latest names; 0 when there is none yet."""
    pointer = Path(run_dir) / CHECKPOINTS / LATEST
    if not pointer.is_file():
        return 0
    path = pointer.parent / pointer.read_text().strip()
    return checkpoint_step(path) if path.is_dir() else 0
