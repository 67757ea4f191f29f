"""Checkpoints: everything an exact resume needs, written atomically, found again after a crash.

Layout (ARCHITECTURE.md): `RUN/checkpoints/step_XXXXXXXX/` holds
  deepspeed/        the engine's own checkpoint: module, optimizer and ZeRO shards, scheduler
  rank_XXXXX.pt     per rank: python/numpy/torch(/cuda) RNG states, EMA shard, dataloader state
  weights.pt        consolidated fp32 {"model", "ema"} (loads with weights_only=True, for eval)
  config.yaml       the resolved training config
  meta.json         step, world size, data/sequence parallel sizes, global batch, model size
  COMPLETE          written last: the size of every file above, so truncation is detected
and `RUN/checkpoints/latest` names the newest complete one. A checkpoint is built in a hidden
temporary directory and renamed into place only once every rank has written and `COMPLETE` is on
disk, then `latest` is replaced atomically; a crash at any point leaves the previous good state.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from phyworld.cli import UserError
from phyworld.config import to_dict, to_yaml
from phyworld.storage import fsync_path, write_bytes
from training.config import TrainConfig
from training.ema import EMA

COMPLETE = "COMPLETE"
LATEST = "latest"
DEEPSPEED_TAG = "deepspeed"


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be resumed with this config; the message says what to do."""


@dataclass
class RunShape:
    """What must match between a checkpoint and the run resuming it."""

    world_size: int
    dp_size: int
    sp_size: int
    global_batch_size: int


def step_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:08d}"


# ---------------------------------------------------------------------------------------------
#                                      Atomic file writes
# ---------------------------------------------------------------------------------------------


def _file_sizes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != COMPLETE
    }


# ---------------------------------------------------------------------------------------------
#                                    Per-rank state (RNG, EMA, data)
# ---------------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Every random generator the loop draws from on this rank."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------
#                                             Save
# ---------------------------------------------------------------------------------------------


def _consolidated_model(engine: Any, ds_dir: Path) -> dict[str, torch.Tensor]:
    """fp32 model weights: from the ZeRO shards just written (stages 1-3) or the module (stage 0)."""
    if engine.zero_optimization_stage() == 0:
        return {k: v.detach().float().cpu().clone() for k, v in engine.module.state_dict().items()}
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    return {
        k: v.float().clone()
        for k, v in get_fp32_state_dict_from_zero_checkpoint(str(ds_dir), tag=DEEPSPEED_TAG).items()
    }


def save(
    run_dir: str | Path,
    step: int,
    engine: Any,
    ema: EMA,
    loader: Any,
    cfg: TrainConfig,
    shape: RunShape,
    keep_last: int,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write checkpoint `step` (all ranks call this); returns its final directory.

    `extra` is more per-rank state (e.g. the noise generator), returned by `load`.
    """
    rank = dist.get_rank()
    root = Path(run_dir) / "checkpoints"
    final = step_dir(run_dir, step)
    tmp = root / f".tmp_step_{step:08d}"
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # a save that crashed earlier
        tmp.mkdir()
    dist.barrier()

    # 1. DeepSpeed's own state: module, optimizer and ZeRO partitions, LR scheduler.
    engine.save_checkpoint(str(tmp), tag=DEEPSPEED_TAG, save_latest=False)
    # 2. This rank's RNG, EMA shard and loader position.
    per_rank = {
        "rng": rng_state(),
        "ema": ema.state_dict(),
        "loader": loader.state_dict(),
        "extra": extra or {},
    }
    rank_file = tmp / f"rank_{rank:05d}.pt"
    torch.save(per_rank, rank_file)
    fsync_path(rank_file)
    ema_full = ema.consolidated() if rank == 0 or ema.partitioned else None  # ZeRO-3: collective
    dist.barrier()

    # 3. Rank 0: consolidated weights, config, meta, COMPLETE, rename, `latest`, prune.
    if rank == 0:
        weights = {"model": _consolidated_model(engine, tmp), "ema": ema_full}
        torch.save(weights, tmp / "weights.pt")
        (tmp / "config.yaml").write_text(to_yaml(cfg))
        meta = {
            "step": step,
            "world_size": shape.world_size,
            "dp_size": shape.dp_size,
            "sp_size": shape.sp_size,
            "global_batch_size": shape.global_batch_size,
            "zero_stage": engine.zero_optimization_stage(),
            "model": to_dict(cfg.model),
            "time": time.time(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "slurm_restart_count": int(os.environ.get("SLURM_RESTART_COUNT", 0)),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        for p in tmp.rglob("*"):
            if p.is_file():
                fsync_path(p)
        write_bytes(tmp / COMPLETE, json.dumps(_file_sizes(tmp), indent=1).encode())
        if final.exists():  # a checkpoint of this step from a run that then crashed: replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_path(root)
        write_bytes(root / LATEST, final.name.encode())
        prune(root, keep_last)
    dist.barrier()
    return final


def prune(root: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` complete checkpoints, and leftover temporaries."""
    complete = sorted(p for p in root.glob("step_*") if is_complete(p))
    for old in complete[: max(0, len(complete) - keep_last)]:
        shutil.rmtree(old, ignore_errors=True)
    for crashed in root.glob(".tmp_step_*"):  # saves killed mid-way (no save is running now)
        shutil.rmtree(crashed, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
#                                        Find and load
# ---------------------------------------------------------------------------------------------


def is_complete(path: Path) -> bool:
    """True when `COMPLETE` exists and every file it lists has the size it recorded."""
    marker = path / COMPLETE
    try:
        sizes = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    try:
        return all((path / rel).stat().st_size == size for rel, size in sizes.items())
    except OSError:
        return False


def latest(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run; a broken one is skipped with a warning."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return None
    candidates = sorted(root.glob("step_*"), reverse=True)
    pointer = root / LATEST
    if pointer.is_file():
        named = root / pointer.read_text().strip()
        candidates = [named] + [c for c in candidates if c != named]
    for path in candidates:
        if is_complete(path):
            return path
        warnings.warn(
            f"checkpoint {path} is incomplete or corrupt (missing or truncated files); "
            "skipping it in favour of an older one",
            stacklevel=2,
        )
    return None


def agreed_latest(run_dir: str | Path) -> Path | None:
    """`latest(run_dir)` as decided by rank 0, so every rank resumes from the same checkpoint."""
    choice = [str(latest(run_dir) or "") if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(choice, src=0)
    return Path(choice[0]) if choice[0] else None


def check_compatible(path: Path, cfg: TrainConfig, shape: RunShape, zero_stage: int) -> dict:
    """Raise a `CheckpointError` naming the fix if this run cannot resume `path` exactly."""
    meta = json.loads((path / "meta.json").read_text())
    new_dir = "start a new run (another output_dir)"
    init = f"{new_dir} with checkpoint.init_from={path} (weights and EMA, fresh optimizer)"
    model = to_dict(cfg.model)
    saved_model = meta["model"]
    arch = [k for k in model if k != "activation_checkpointing" and model[k] != saved_model.get(k)]
    if arch:
        diff = ", ".join(
            f"model.{k}: checkpoint {saved_model.get(k)!r}, config {model[k]!r}" for k in arch
        )
        raise CheckpointError(
            f"checkpoint {path} is from another model ({diff}). Set the config back to the "
            f"checkpoint's values, or {new_dir}."
        )
    if meta["global_batch_size"] != shape.global_batch_size:
        raise CheckpointError(
            f"checkpoint {path} was trained with global batch {meta['global_batch_size']}, this run "
            f"has {shape.global_batch_size} (micro x accum x data-parallel). Exact resume needs the "
            "same global batch: adjust parallel.micro_batch_size / grad_accum_steps, or "
            + init
            + "."
        )
    if (meta["world_size"], meta["sp_size"]) != (shape.world_size, shape.sp_size):
        raise CheckpointError(
            f"checkpoint {path} was written by {meta['world_size']} ranks (sequence parallel "
            f"{meta['sp_size']}), this run has {shape.world_size} (sequence parallel {shape.sp_size}). "
            "Supported: resuming on the same number of ranks and the same sequence_parallel_size "
            "(ZeRO shards, EMA shards, RNG and data order are per rank). To continue at another "
            "scale, " + init + "."
        )
    if meta["zero_stage"] != zero_stage:
        raise CheckpointError(
            f"checkpoint {path} used ZeRO stage {meta['zero_stage']}, this run {zero_stage}: set "
            f"parallel.zero_stage={meta['zero_stage']}, or " + init + "."
        )
    return meta


def load(
    path: Path, engine: Any, ema: EMA, loader: Any, cfg: TrainConfig, shape: RunShape
) -> tuple[int, dict[str, Any]]:
    """Restore everything `save` wrote (all ranks call this): returns (step, this rank's `extra`)."""
    meta = check_compatible(path, cfg, shape, engine.zero_optimization_stage())
    load_path, _ = engine.load_checkpoint(str(path), tag=DEEPSPEED_TAG)
    if load_path is None:
        raise CheckpointError(f"DeepSpeed could not load {path / DEEPSPEED_TAG}")
    per_rank = torch.load(path / f"rank_{dist.get_rank():05d}.pt", weights_only=False)
    ema.load_state_dict(per_rank["ema"])
    loader.load_state_dict(per_rank["loader"])
    set_rng_state(per_rank["rng"])
    return int(meta["step"]), per_rank["extra"]


def load_weights(path: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """`{"model", "ema"}` fp32 state dicts from a checkpoint directory or a `weights.pt` file."""
    path = Path(path)
    file = path / "weights.pt" if path.is_dir() else path
    if not file.is_file():
        raise CheckpointError(
            f"{file} does not exist; point at a step_XXXXXXXX directory or its weights.pt"
        )
    return torch.load(file, map_location="cpu", weights_only=True)
