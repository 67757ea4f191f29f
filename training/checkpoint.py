"""Checkpoints: everything an exact resume needs, written atomically, verified before it is read.

Layout (ARCHITECTURE.md): `RUN/checkpoints/step_XXXXXXXX/` holds
  deepspeed/        the engine's own checkpoint: module, optimizer and ZeRO shards, scheduler
  rank_XXXXX.pt     per rank: python/numpy/torch(/cuda) RNG states, EMA shard, dataloader state
  weights.pt        consolidated fp32 {"model", "ema"} (for eval and `checkpoint.init_from`)
  config.yaml       the resolved training config
  meta.json         step, world size, data/sequence parallel sizes, global batch and its split,
                    model, the loader state (data order: epoch, position, canonical nodes)
  COMPLETE          written last: the manifest, size and sha256 of every file above
and `RUN/checkpoints/latest` names the newest complete one. A checkpoint is built in a hidden
temporary directory and renamed into place only once every rank has written and `COMPLETE` is on
disk, then `latest` is replaced atomically; a crash at any point leaves the previous good state.

Trust nothing on disk: every file is hashed while it is written, by the rank that writes it, and
a reader checks the sha256 of each file it reads against `COMPLETE` before unpickling it (resume:
every file, shared out over the ranks so each is hashed once; eval and `init_from`: the files
they read). Every `.pt`, DeepSpeed's included, loads with `weights_only=True`, so a crafted
pickle runs no code even with a forged manifest. A checkpoint that fails on resume is moved to
`corrupt_step_X` (kept, never deleted) and the one before it is used. Old checkpoints are pruned
by renaming them to `.trash_*` (never read) and deleting what their manifest lists; a prune or
save killed half-way is cleaned up at the next start or save.

Resume on another layout (a job requeued onto more or fewer nodes, another sequence-parallel
size): `fit_layout` keeps the run's global batch (accumulation, if need be the micro-batch,
recomputed) and its data order (streaming's canonical nodes); `resume` then reshards the ZeRO
state (`training.reshard`) and takes the EMA, the loader position and the LR schedule from the
checkpoint's layout-free copies. Every step then sees the same samples with the same noise as
the uninterrupted run; losses agree to float rounding, not bit for bit.
"""

from __future__ import annotations

import json
import os
import random
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import OmegaConf

from phyworld.config import to_dict, to_yaml
from phyworld.data.runs import LATEST, WEIGHTS, step_dir
from phyworld.storage import fsync_path, write_bytes
from training.checkpoint_files import (
    CheckpointError,
    clean_leftovers,
    discard,
    is_complete,
    raise_if_corrupt,
    read_manifest,
    torch_load,
    torch_save,
    verify,
    write_hashed,
    write_manifest,
)
from training.config import ModelConfig, TrainConfig
from training.ema import EMA
from training.reshard import load_zero_state, read_zero_state

DEEPSPEED_TAG = "deepspeed"
READ_BY_INFERENCE = ("config.yaml", "meta.json", WEIGHTS)  # all that eval and init_from read
CORRUPT = "corrupt_"  # prefix of checkpoints that failed verification on resume: kept as they are


@dataclass
class RunShape:
    """This launch's layout and global batch. Resuming needs the checkpoint's global batch; the
    layout may differ (`fit_layout`, `training.reshard`)."""

    world_size: int
    dp_size: int
    sp_size: int
    global_batch_size: int


# ---------------------------------------------------------------------------------------------
#                       DeepSpeed's checkpoint I/O: hashed writes, weights-only loads
# ---------------------------------------------------------------------------------------------


def _deepspeed_safe_globals() -> list[Any]:
    """The classes DeepSpeed 0.19 pickles in its checkpoints besides tensors (ZeRO 0-3, fp32 and
    bf16; found with `torch.serialization.get_unsafe_globals_in_checkpoint`)."""
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, ZeroStageEnum, fragment_address]


class _VerifiedIO:
    """DeepSpeed's checkpoint engine (`TorchCheckpointEngine`) with two changes: `save` hashes
    what it writes (`written`: path -> sha256), `load` is `weights_only=True`. DeepSpeed passes
    `weights_only=False` itself, so its own loads would run any pickle. Every file
    `engine.load_checkpoint` reads goes through here; the only DeepSpeed 0.19 loads that bypass
    the engine are its universal-checkpoint readers (ZeRO `load_universal`, never used here) and
    zero_to_fp32 (made weights-only by `_weights_only_everywhere`)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.written: dict[str, str] = {}

    def save(self, state_dict: Any, path: str) -> None:
        self.written[path] = torch_save(state_dict, Path(path), self.inner.zipfile_serialization)

    def load(self, path: str, map_location: Any = None) -> Any:
        return _load_deepspeed(Path(path), map_location)

    def __getattr__(self, name: str) -> Any:  # create, commit, makedirs, is_decoupled, ...
        return getattr(self.inner, name)


def _load_deepspeed(path: Path, map_location: Any = "cpu") -> Any:
    """A file DeepSpeed wrote, weights-only (its three checkpoint classes allowed)."""
    return torch_load(path, map_location, _deepspeed_safe_globals())


def verified_io(engine: Any) -> _VerifiedIO:
    """The engine's checkpoint I/O, replaced (once) by `_VerifiedIO`."""
    from deepspeed.runtime.checkpoint_engine import TorchCheckpointEngine

    io = engine.checkpoint_engine
    if isinstance(io, _VerifiedIO):
        return io
    if type(io) is not TorchCheckpointEngine:
        raise CheckpointError(
            f"DeepSpeed's checkpoint engine is {type(io).__name__}; phyworld hashes and verifies "
            "checkpoints through TorchCheckpointEngine only: remove `checkpoint` writer or "
            "datastates settings from the DeepSpeed config"
        )
    engine.checkpoint_engine = _VerifiedIO(io)
    return engine.checkpoint_engine


@contextmanager
def _weights_only_everywhere() -> Iterator[None]:
    """Make torch.load weights-only even where the caller passes `weights_only=False` (DeepSpeed's
    zero_to_fp32 does), through torch's documented TORCH_FORCE_WEIGHTS_ONLY_LOAD override."""
    names = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    before = {name: os.environ.pop(name, None) for name in names}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        with torch.serialization.safe_globals(_deepspeed_safe_globals()):
            yield
    finally:
        del os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"]
        os.environ.update({name: value for name, value in before.items() if value is not None})


# ---------------------------------------------------------------------------------------------
#                                    Per-rank state (RNG, EMA, data)
# ---------------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Every random generator the loop draws from on this rank, as tensors and plain values."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {
        "python": random.getstate(),
        "numpy": (name, keys.tolist(), pos, has_gauss, cached),  # no numpy objects: weights-only
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def reseed_rng(seed: int, step: int, dp_rank: int) -> None:
    """Fresh python/numpy/torch(/cuda) streams for this rank from (seed, step, data-parallel
    rank): on another layout the saved per-rank streams have no owner."""
    key = int(np.random.SeedSequence([seed, step, dp_rank]).generate_state(1, np.uint32)[0])
    random.seed(key)
    np.random.seed(key)
    torch.manual_seed(key)


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
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

    with _weights_only_everywhere():
        full = get_fp32_state_dict_from_zero_checkpoint(str(ds_dir), tag=DEEPSPEED_TAG)
    return {k: v.float().clone() for k, v in full.items()}


def save(
    run_dir: str | Path,
    step: int,
    engine: Any,
    ema: EMA,
    loader: Any,
    cfg: TrainConfig,
    shape: RunShape,
    keep_last: int,
) -> Path:
    """Write checkpoint `step` (all ranks call this); returns its final directory."""
    rank = dist.get_rank()
    root = Path(run_dir) / "checkpoints"
    final = step_dir(run_dir, step)
    tmp = root / f".tmp_step_{step:08d}"
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        clean_leftovers(root)  # of a save or prune killed earlier
        tmp.mkdir()
    dist.barrier()

    # 1. DeepSpeed's own state: module, optimizer and ZeRO partitions, LR scheduler.
    io = verified_io(engine)
    io.written.clear()
    engine.save_checkpoint(str(tmp), tag=DEEPSPEED_TAG, save_latest=False)
    digests = {Path(p).relative_to(tmp).as_posix(): h for p, h in io.written.items()}
    # 2. This rank's RNG, EMA shard and loader position.
    per_rank = {"rng": rng_state(), "ema": ema.state_dict(), "loader": loader.state_dict()}
    rank_file = f"rank_{rank:05d}.pt"
    digests[rank_file] = torch_save(per_rank, tmp / rank_file)
    ema_full = ema.consolidated() if rank == 0 or ema.partitioned else None  # ZeRO-3: collective
    every_rank = [None] * dist.get_world_size() if rank == 0 else None
    dist.gather_object(digests, every_rank, dst=0)  # also: every rank has written its files

    # 3. Rank 0: consolidated weights, config, meta, COMPLETE, rename, `latest`, prune.
    if rank == 0:
        for written in every_rank:
            digests.update(written)
        weights = {"model": _consolidated_model(engine, tmp), "ema": ema_full}
        digests[WEIGHTS] = torch_save(weights, tmp / WEIGHTS)
        text = to_yaml(cfg).encode()
        digests["config.yaml"] = write_hashed(tmp / "config.yaml", lambda f: f.write(text))
        meta = {
            "step": step,
            "world_size": shape.world_size,
            "dp_size": shape.dp_size,
            "sp_size": shape.sp_size,
            "global_batch_size": shape.global_batch_size,
            "micro_batch_size": cfg.parallel.micro_batch_size,
            "grad_accum_steps": cfg.parallel.grad_accum_steps,
            "loader": per_rank["loader"],  # the same on every rank: where the data order stands
            "zero_stage": engine.zero_optimization_stage(),
            "model": to_dict(cfg.model),
            "time": time.time(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "slurm_restart_count": int(os.environ.get("SLURM_RESTART_COUNT", 0)),
        }
        blob = json.dumps(meta, indent=2).encode()
        digests["meta.json"] = write_hashed(tmp / "meta.json", lambda f: f.write(blob))
        write_manifest(tmp, digests)
        if final.exists():  # saved by a launch that crashed before naming it in `latest`
            discard(final)
        os.replace(tmp, final)
        fsync_path(root)
        write_bytes(root / LATEST, final.name.encode())
        prune(root, keep_last)
    dist.barrier()
    return final


# ---------------------------------------------------------------------------------------------
#                                             Prune
# ---------------------------------------------------------------------------------------------


def prune(root: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` complete checkpoints (rank 0, no save running)."""
    complete = sorted(p for p in root.glob("step_*") if is_complete(p))
    for old in complete[: max(0, len(complete) - keep_last)]:
        discard(old)


# ---------------------------------------------------------------------------------------------
#                                        Find and resume
# ---------------------------------------------------------------------------------------------


def _candidates(root: Path) -> Iterator[Path]:
    """Complete checkpoints, the one `latest` names first, then newest first; an incomplete one
    (no COMPLETE, a missing or truncated file) is skipped with a warning."""
    if not root.is_dir():
        return
    found = sorted(root.glob("step_*"), reverse=True)
    pointer = root / LATEST
    if pointer.is_file():
        name = pointer.read_text().strip()
        named = [p for p in found if p.name == name]
        if not named:
            warnings.warn(f"{pointer} names {name!r}, which is not a checkpoint here", stacklevel=3)
        found = named + [p for p in found if p.name != name]
    for path in found:
        if is_complete(path):
            yield path
        else:
            warnings.warn(
                f"checkpoint {path} is incomplete or corrupt (missing or truncated files); "
                "skipping it in favour of an older one",
                stacklevel=3,
            )


def latest(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run; a broken one is skipped with a warning."""
    return next(_candidates(Path(run_dir) / "checkpoints"), None)


def verify_shared(path: Path, names: Iterable[str] | None = None) -> list[str]:
    """`verify(path, names)` with the hashing shared out over the ranks (all call this), balanced
    by bytes: each file is read once, and every rank returns every rank's findings."""
    files = read_manifest(path) or {}
    world, rank = dist.get_world_size(), dist.get_rank()
    load, mine = [0] * world, []
    for rel in sorted(files if names is None else names, key=lambda r: (-_size(files, r), r)):
        owner = load.index(min(load))  # the same choice on every rank
        load[owner] += _size(files, rel)
        if owner == rank:
            mine.append(rel)
    everyone: list[list[str] | None] = [None] * world
    dist.all_gather_object(everyone, verify(path, mine))
    return sorted({p for found in everyone for p in found})


def _size(files: dict[str, dict[str, Any]], rel: str) -> int:
    return files.get(rel, {}).get("size", 0)


def _quarantine(path: Path) -> Path:
    """Move a checkpoint that failed verification aside (never deleted: the user decides)."""
    target, n = path.with_name(f"{CORRUPT}{path.name}"), 0
    while target.exists():
        n += 1
        target = path.with_name(f"{CORRUPT}{path.name}.{n}")
    os.replace(path, target)
    fsync_path(path.parent)
    return target


def resume(
    run_dir: str | Path, engine: Any, ema: EMA, loader: Any, cfg: TrainConfig, shape: RunShape
) -> tuple[Path, int] | None:
    """Restore the newest intact checkpoint of the run (all ranks call this): returns (its path,
    step), or None when there is none.

    Every file is verified against `COMPLETE` before anything is loaded. A checkpoint that fails
    is moved to `corrupt_step_X` with a warning naming the files, and the one before it is tried;
    if none is left, a `CheckpointError` (rather than silently starting over). A checkpoint of
    another layout (world size, sequence-parallel size) is resharded onto this one; call
    `fit_layout` first, so that the engine and loader were built for its global batch.
    """
    rank = dist.get_rank()
    root = Path(run_dir) / "checkpoints"
    if rank == 0 and root.is_dir():
        clean_leftovers(root)
    candidates = _candidates(root) if rank == 0 else iter(())
    set_aside: list[str] = []
    while True:
        choice = [str(next(candidates, "")) if rank == 0 else None]
        dist.broadcast_object_list(choice, src=0)
        if not choice[0] and set_aside:
            raise CheckpointError(
                f"no intact checkpoint in {root}: {', '.join(set_aside)} failed verification and "
                f"were moved to {CORRUPT}step_* (see the warnings). Restore a good copy, or start "
                "over with checkpoint.resume=false or another output_dir"
            )
        if not choice[0]:
            return None
        path = Path(choice[0])
        problems = verify_shared(path)
        if not problems:
            break
        set_aside.append(path.name)
        if rank == 0:
            kept = _quarantine(path)
            warnings.warn(
                f"checkpoint {path} is corrupt, not resuming from it: {'; '.join(problems)}. "
                f"Moved it to {kept} (kept for inspection: delete it yourself); trying the "
                "checkpoint before it",
                stacklevel=2,
            )
    pointer = root / LATEST
    if rank == 0 and (not pointer.is_file() or pointer.read_text().strip() != path.name):
        write_bytes(pointer, path.name.encode())  # after a fallback: name the one in use
    return path, _restore(path, engine, ema, loader, cfg, shape)


def _model_diff(saved: dict[str, Any], model: ModelConfig) -> str:
    """`model.K: checkpoint X, config Y` for each architecture setting that differs, or ''."""
    now = to_dict(model)
    keys = [k for k in now if k != "activation_checkpointing" and now[k] != saved.get(k)]
    return ", ".join(f"model.{k}: checkpoint {saved.get(k)!r}, config {now[k]!r}" for k in keys)


def _fix(path: Path) -> str:
    return (
        "start a new run (another output_dir) with "
        f"checkpoint.init_from={path} (weights and EMA, fresh optimizer)"
    )


def check_compatible(path: Path, cfg: TrainConfig, shape: RunShape, zero_stage: int) -> dict:
    """Raise a `CheckpointError` naming the fix if this run cannot continue `path`; its meta."""
    meta = json.loads((path / "meta.json").read_text())
    diff = _model_diff(meta["model"], cfg.model)
    if diff:
        raise CheckpointError(
            f"checkpoint {path} is from another model ({diff}). Set the config back to the "
            "checkpoint's values, or start a new run (another output_dir)."
        )
    if meta["global_batch_size"] != shape.global_batch_size:
        raise CheckpointError(
            f"checkpoint {path} was trained with global batch {meta['global_batch_size']}, this run "
            f"has {shape.global_batch_size} (micro x accum x data-parallel). Resuming keeps the "
            "global batch: set parallel.micro_batch_size / grad_accum_steps / global_batch_size "
            f"back, or {_fix(path)}."
        )
    if meta["zero_stage"] != zero_stage:
        raise CheckpointError(
            f"checkpoint {path} used ZeRO stage {meta['zero_stage']}, this run {zero_stage}: set "
            f"parallel.zero_stage={meta['zero_stage']}, or {_fix(path)}."
        )
    return meta


def _same_layout(meta: dict[str, Any], world_size: int, sp_size: int) -> bool:
    return (meta["world_size"], meta["sp_size"]) == (world_size, sp_size)


def _restore(
    path: Path, engine: Any, ema: EMA, loader: Any, cfg: TrainConfig, shape: RunShape
) -> int:
    """Load everything `save` wrote into this rank (a verified checkpoint): its step. On the
    layout that wrote it, each rank's own files (bit-exact); on another, the layout-free state."""
    meta = check_compatible(path, cfg, shape, engine.zero_optimization_stage())
    step = int(meta["step"])
    verified_io(engine)
    if not _same_layout(meta, shape.world_size, shape.sp_size):
        _restore_resharded(path, engine, ema, loader, cfg, shape, step)
        return step
    per_rank = torch_load(path / f"rank_{dist.get_rank():05d}.pt")
    load_path, _ = engine.load_checkpoint(str(path), tag=DEEPSPEED_TAG)
    if load_path is None:
        raise CheckpointError(f"DeepSpeed could not load {path / DEEPSPEED_TAG}")
    ema.load_state_dict(per_rank["ema"])
    loader.load_state_dict(per_rank["loader"])
    set_rng_state(per_rank["rng"])
    return step


def _restore_resharded(
    path: Path, engine: Any, ema: EMA, loader: Any, cfg: TrainConfig, shape: RunShape, step: int
) -> None:
    """Restore a checkpoint of another layout: ZeRO state resharded, the consolidated EMA, the
    loader position (the same on every rank that wrote it), fresh per-rank RNG streams."""
    if engine.zero_optimization_stage() > 0:
        load_zero_state(engine, read_zero_state(path / DEEPSPEED_TAG, _load_deepspeed))
    elif engine.load_checkpoint(str(path), tag=DEEPSPEED_TAG)[0] is None:  # ZeRO-0: one copy
        raise CheckpointError(f"DeepSpeed could not load {path / DEEPSPEED_TAG}")
    ema.load_full(torch_load(path / WEIGHTS)["ema"])
    loader.load_state_dict(torch_load(path / "rank_00000.pt")["loader"])
    reseed_rng(cfg.seed, step, dist.get_rank() // shape.sp_size)  # SP ranks are adjacent


# ---------------------------------------------------------------------------------------------
#                          Another layout: the run's global batch and data order
# ---------------------------------------------------------------------------------------------


def _newest_meta(root: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint whose meta.json is intact, and that meta (rank 0 reads; all get it).
    A checkpoint whose other files are corrupt is still found here: `resume` sets it aside and
    falls back to an older one, which belongs to the same run, with the same batch and order."""
    found: list[Any] = [None]
    if dist.get_rank() == 0:
        for path in _candidates(root):
            if not verify(path, ["meta.json"]):
                found[0] = (path, json.loads((path / "meta.json").read_text()))
                break
    dist.broadcast_object_list(found, src=0)
    return found[0]


def _with(cfg: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """`cfg` with some values replaced (`{"parallel": {"micro_batch_size": 4}}`), read-only."""
    new = OmegaConf.merge(cfg, values)
    OmegaConf.set_readonly(new, True)
    return new  # type: ignore[return-value]


def _micro_for(share: int, largest: int, keeps_order: Callable[[int], bool]) -> int | None:
    """The largest micro-batch <= `largest` that cuts a rank's `share` of the global batch into
    whole micro-batches and keeps streaming's sample order, or None."""
    fits = (m for m in range(min(largest, share), 0, -1) if share % m == 0 and keeps_order(m))
    return next(fits, None)


def _split(cfg: TrainConfig, batch: int, micro: int, dp: int) -> TrainConfig:
    accum = batch // dp // micro
    values = {"micro_batch_size": micro, "grad_accum_steps": accum, "global_batch_size": batch}
    return _with(cfg, {"parallel": values})


def fit_layout(cfg: TrainConfig, groups: Any) -> tuple[TrainConfig, list[str]]:
    """The config this launch trains with, and lines saying what changed (all ranks call this,
    before the engine and the loader are built). The global batch is what a run keeps; micro-batch
    x accumulation x data parallel is its split over the ranks of the moment:

    - resuming: the newest checkpoint's global batch and data order (canonical nodes). On the
      layout that wrote it nothing else changes. On another (`groups`: another world or
      sequence-parallel size, e.g. a requeue onto other nodes) grad_accum_steps is recomputed,
      and the micro-batch lowered to the largest that splits a rank's share (and keeps
      streaming's sample order) when the configured one does not; a `CheckpointError` names the
      fix when nothing splits it;
    - a first launch (or checkpoint.resume=false) with `parallel.global_batch_size` set: that
      batch, split the same way (a job submitted with a node range starts on whatever count is
      free). Otherwise the config as it is.
    """
    from training.data import keeps_sample_order, loader_nodes

    p, dp = cfg.parallel, groups.dp_size
    newest = _newest_meta(Path(cfg.output_dir) / "checkpoints") if cfg.checkpoint.resume else None
    if newest is None:
        batch = p.global_batch_size
        if not batch or batch % dp or p.micro_batch_size * p.grad_accum_steps * dp == batch:
            return cfg, []  # nothing to fit, or engine.global_batch_size says what does
        micro = _micro_for(batch // dp, p.micro_batch_size, lambda m: True)
        fitted = _split(cfg, batch, micro, dp)
        return fitted, [
            f"parallel.global_batch_size={batch} on {dp} data-parallel ranks: micro-batch "
            f"{micro} x accumulation {fitted.parallel.grad_accum_steps}"
        ]
    path, meta = newest
    order = meta.get("loader") or {}
    canonical = order.get("num_canonical_nodes")
    pinned = _with(cfg, {"data": {"num_canonical_nodes": canonical}}) if canonical else cfg
    batch = meta["global_batch_size"]
    if _same_layout(meta, groups.world_size, groups.sp_size):
        return pinned, []
    if p.global_batch_size and p.global_batch_size != batch:
        return pinned, []  # an explicit change of global batch: check_compatible says what to do
    if batch % dp:
        fitting = [d for d in range(1, batch + 1) if batch % d == 0]
        raise CheckpointError(
            f"checkpoint {path} trained with global batch {batch}, which {dp} data-parallel ranks "
            f"(world {groups.world_size} / sequence parallel {groups.sp_size}) cannot share "
            f"equally. Resume with a data-parallel size among {fitting}, or {_fix(path)}."
        )
    share, nodes = batch // dp, loader_nodes(groups.sp_size)
    first = order.get("initial_physical_nodes") or nodes
    micro = _micro_for(
        share,
        p.micro_batch_size,
        lambda m: not canonical or keeps_sample_order(canonical, first, nodes, m),
    )
    if micro is None:
        raise CheckpointError(
            f"checkpoint {path}: its data order was laid out over {canonical} canonical nodes "
            f"(first launch on {first}); streaming cannot keep it on {nodes} nodes with any "
            f"micro-batch dividing {share}. Resume on a node count that divides or is a multiple "
            f"of {canonical}, or {_fix(path)}."
        )
    notes = [
        f"resuming {path.name} on another layout: written by {meta['world_size']} ranks "
        f"(sequence parallel {meta['sp_size']}, data parallel {meta['dp_size']}, micro-batch "
        f"{meta.get('micro_batch_size')} x accumulation {meta.get('grad_accum_steps')}), now "
        f"{groups.world_size} ranks (sequence parallel {groups.sp_size}, data parallel {dp}): "
        f"global batch {batch} kept as micro-batch {micro} x accumulation {share // micro}"
    ]
    if micro != p.micro_batch_size:
        notes.append(
            f"micro-batch {p.micro_batch_size} -> {micro}: a rank's {share} samples per step do "
            f"not split into micro-batches of {p.micro_batch_size} here (same math, less memory)"
        )
    notes.append(
        "kept exactly: every step's samples (canonical nodes "
        f"{canonical}), their noise and timesteps (drawn per sample), the optimizer state "
        "(ZeRO partitions resharded), EMA, LR schedule. Not bit for bit: losses and weights "
        "agree to float rounding, as gradients are now summed over another split of the "
        "batch; per-rank python/numpy/torch RNG streams are reseeded from (seed, step, "
        "data-parallel rank) (training draws nothing from them)"
    )
    return _split(pinned, batch, micro, dp), notes


# ---------------------------------------------------------------------------------------------
#                               Weights for eval and init_from
# ---------------------------------------------------------------------------------------------


def checkpoint_dir(path: str | Path) -> Path:
    """The checkpoint directory `path` (or the one holding the file `path`), which must exist and
    be complete; raises a `CheckpointError` saying which it is not."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"checkpoint {path} does not exist; give RUN/checkpoints/step_XXXXXXXX (or its weights.pt)"
        )
    ckpt = path if path.is_dir() else path.parent
    if not is_complete(ckpt):
        raise CheckpointError(
            f"{ckpt} is not a complete checkpoint (no valid COMPLETE marker, or missing or "
            "truncated files); give a step_XXXXXXXX directory of RUN/checkpoints"
        )
    return ckpt


def init_weights(path: str | Path, model: ModelConfig) -> dict[str, dict[str, torch.Tensor]]:
    """`{"model", "ema"}` fp32 state dicts of `checkpoint.init_from`, verified, after checking
    that they are weights of the model this config builds."""
    ckpt = checkpoint_dir(path)
    raise_if_corrupt(ckpt, verify_shared(ckpt, ["meta.json", WEIGHTS]))
    saved = json.loads((ckpt / "meta.json").read_text())["model"]
    diff = _model_diff(saved, model)
    if diff:
        raise CheckpointError(
            f"checkpoint.init_from={path} holds weights of another model ({diff}). Set those "
            f"model.* values to the checkpoint's (e.g. model.size={saved.get('size')}), or "
            f"init from a checkpoint of a DiT-{model.size} run"
        )
    return torch_load(ckpt / WEIGHTS)
