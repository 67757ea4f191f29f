"""Training samples: a datagen dataset (or an encoded one) streamed from s3:// or a local directory.

`build_dataloader` returns a `StreamingDataLoader` over a `StreamingDataset` that is sharded over
the data-parallel ranks only: the ranks of one sequence-parallel group are consecutive and get the
same samples (streaming's `replication`). The loader's `state_dict()` goes into every checkpoint,
so a resumed run sees exactly the samples an uninterrupted one would have.

Which samples make up an optimizer step does not depend on the layout (nodes, ranks, loader
workers, micro-batch x accumulation): streaming lays each epoch out as one global order dealt
across the ranks, so step k of an epoch trains on samples [k GB, (k + 1) GB) of it, as long as the
canonical nodes stay those of the first launch (`data.num_canonical_nodes`, kept in the loader
state) and the epoch is a whole number of global batches: it is cut to a multiple of GB and of the
canonical nodes (streaming draws the few samples left out at random, each epoch). That is what
lets a run resume on another node count (training.checkpoint).

A batch is `{"video": (B, 3, T, H, W) uint8}` at the stored resolution for `kind: videos` (the
trainer makes floats in [-1, 1] at `data.resolution` on its device: `to_unit_range`), or
`{"latents": (B, C, T, h, w)}` for `kind: latents` (datasets whose `latents` column holds
`(C, T, h, w)` arrays already encoded by the frozen autoencoder), and `"index": (B,)`, each
sample's index in the dataset (its noise is drawn from it: training.diffusion.sample_generators).
"""

from __future__ import annotations

import hashlib
import json
import math
import signal
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

import phyworld  # noqa: F401  (makes `import streaming` safe: must come first)

# isort: split
from streaming import StreamingDataLoader, StreamingDataset
from streaming.base.util import clean_stale_shared_memory
from streaming.base.world import World

from datagen import schema  # registers the `video_zstd` frames encoding (in loader workers too)
from phyworld import storage
from training.config import DataConfig


class DataError(ValueError):
    """A dataset that cannot be trained on; the message says why and what to do."""


def decode_frames(value: Any) -> np.ndarray:
    """The `frames` column as a (T, H, W, 3) uint8 array, whichever way the MDS column decoded."""
    if isinstance(value, np.ndarray):
        return value
    return schema.decode_frames(value)


def video_uint8(frames: np.ndarray, num_frames: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, num_frames, H, W) uint8: what the loader ships to the trainer."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise DataError(f"expected frames of shape (T, H, W, 3), got {frames.shape}")
    if frames.shape[0] < num_frames:
        raise DataError(
            f"samples have {frames.shape[0]} frames but data.frames={num_frames}; lower data.frames"
        )
    return torch.from_numpy(np.ascontiguousarray(frames[:num_frames].transpose(3, 0, 1, 2)))


def to_unit_range(video: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 videos (B, 3, T, H, W) -> float in [-1, 1] at resolution x resolution.

    The trainer calls this on the GPU: loader workers then only decompress and reorder bytes,
    and a batch crosses process boundaries as uint8 (4x smaller than floats).
    """
    video = video.float().mul_(1 / 127.5).sub_(1.0)
    if video.shape[-2:] != (resolution, resolution):
        # Area averaging: downsampling a rendered ball keeps its soft edge and its centroid.
        video = F.interpolate(video, size=(video.shape[2], resolution, resolution), mode="area")
    return video


def video_tensor(frames: np.ndarray, num_frames: int, resolution: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, num_frames, resolution, resolution) float in [-1, 1]."""
    return to_unit_range(video_uint8(frames, num_frames)[None], resolution)[0]


class PhysicsVideos(StreamingDataset):
    """A StreamingDataset whose samples are training tensors (videos or latents) and their index."""

    def __init__(self, cfg: DataConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_cfg = cfg

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = super().__getitem__(index)
        if self.data_cfg.kind == "latents":
            latents = torch.from_numpy(np.asarray(sample["latents"], dtype=np.float32))
            return {"latents": latents[:, : self.data_cfg.frames], "index": index}
        frames = video_uint8(decode_frames(sample["frames"]), self.data_cfg.frames)
        return {"video": frames, "index": index}


def whole_epoch(path: str, multiple: int) -> int | None:
    """The epoch size that is a whole number of `multiple` samples, or None when the dataset's
    size already is one (read from its MDS index)."""
    shards = json.loads(storage.read_text(storage.join(path, "index.json")))["shards"]
    count = sum(shard["samples"] for shard in shards)
    if count < multiple:
        raise DataError(
            f"dataset {path} has {count} samples, fewer than one global batch ({multiple}, with "
            "the canonical nodes); use a larger dataset or a smaller parallel.global_batch_size"
        )
    return None if count % multiple == 0 else count // multiple * multiple


def loader_nodes(sequence_parallel_size: int) -> int:
    """The node count streaming lays an epoch out over in this launch (after replication, one
    sequence-parallel group counts as one rank, so SP can change it)."""
    world = World.detect()
    return (
        world.replicate(sequence_parallel_size).num_nodes
        if sequence_parallel_size > 1
        else world.num_nodes
    )


def keeps_sample_order(canonical: int, first_nodes: int, nodes: int, micro_batch_size: int) -> bool:
    """Whether streaming can lay the epoch out over `nodes` in the global order that `canonical`
    canonical nodes fixed at a first launch on `first_nodes`: when one node count divides the
    other, or else (its `relaxed` partition) when nodes x micro-batch is a multiple of first_nodes."""
    return (
        canonical % nodes == 0
        or nodes % canonical == 0
        or nodes * micro_batch_size % first_nodes == 0
    )


def _ignore_job_signals(_worker_id: int) -> None:
    """Loader workers leave preemption signals to the trainer (training.preemption)."""
    for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


def cache_dir(cfg: DataConfig, run_dir: str) -> str | None:
    """Local cache for a remote dataset: the same on every rank of a node, distinct per run."""
    if not cfg.path.startswith(("s3://", "gs://", "oci://", "azure://", "hf://")):
        return None
    if cfg.cache_dir:
        return cfg.cache_dir
    key = hashlib.sha1(f"{cfg.path}|{Path(run_dir).resolve()}".encode()).hexdigest()[:12]
    return str(Path(tempfile.gettempdir()) / "phyworld-streaming" / key)


def check_manifest(path: str) -> None:
    """Verify the dataset against its manifest on rank 0; every rank raises the same clear error."""
    error: list[str | None] = [None]
    if not dist.is_initialized() or dist.get_rank() == 0:
        try:
            from datagen.shards import verify_manifest

            verify_manifest(path)  # sizes and index hash; `checksums=True` would read every shard
        except Exception as err:  # any failure is reported on every rank, not only rank 0
            error[0] = f"{type(err).__name__}: {err}"
    if dist.is_initialized():
        dist.broadcast_object_list(error, src=0)
    if error[0] is not None:
        raise DataError(
            f"dataset {path} does not match its manifest ({error[0]}). Regenerate or finish it "
            "with `python -m datagen`, or set data.verify_manifest=false to train on it anyway."
        )


def build_dataloader(
    cfg: DataConfig,
    micro_batch_size: int,
    sequence_parallel_size: int,
    run_dir: str,
    global_batch_size: int | None = None,
) -> StreamingDataLoader:
    """The shuffled, resumable loader for this rank (call on every rank, after dist init).
    `global_batch_size` (default: one micro-batch) sets what an epoch is a whole number of."""
    if cfg.kind not in ("videos", "latents"):
        raise DataError(f"data.kind={cfg.kind!r}: use videos or latents")
    clean_stale_shared_memory()  # /dev/shm left by a killed run would block this one
    if cfg.verify_manifest:
        check_manifest(cfg.path)
    remote = cfg.path if cache_dir(cfg, run_dir) else None
    canonical = cfg.num_canonical_nodes or loader_nodes(sequence_parallel_size)
    dataset = PhysicsVideos(
        cfg,
        epoch_size=whole_epoch(
            cfg.path, math.lcm(global_batch_size or micro_batch_size, canonical)
        ),
        remote=remote,
        local=cache_dir(cfg, run_dir) or cfg.path,
        shuffle=cfg.shuffle,
        shuffle_seed=cfg.shuffle_seed,
        batch_size=micro_batch_size,
        replication=sequence_parallel_size if sequence_parallel_size > 1 else None,
        num_canonical_nodes=canonical,
    )
    return StreamingDataLoader(
        dataset,
        batch_size=micro_batch_size,
        num_workers=cfg.num_workers,
        worker_init_fn=_ignore_job_signals if cfg.num_workers > 0 else None,
        drop_last=True,
        persistent_workers=False,
    )
