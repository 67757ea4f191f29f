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

Trust and outages: every shard is checked against the dataset's manifest.json (sha256) once,
before anything decodes it: when it is downloaded into the cache (remote datasets; once per node)
or when this process first reads it (local ones). A download that fails for a transient reason
(connection refused or reset, timeout, 5xx, throttling) is retried with exponential backoff for
`data.download_retry_s`; then `StorageUnavailable` names the shard and the endpoint, and the
trainer asks Slurm to requeue the job (the run resumes from its last checkpoint).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import math
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

import phyworld  # noqa: F401  (makes `import streaming` safe: must come first)

# isort: split
from streaming import Stream, StreamingDataLoader, StreamingDataset
from streaming.base.dataset import _ShardState
from streaming.base.format.base.reader import Reader
from streaming.base.world import World

from phyworld import storage
from phyworld.cli import UserError

# `schema` registers the `video_zstd` frames encoding (in loader workers too)
from phyworld.data import codec, shards
from phyworld.data.digest import sha256_file
from phyworld.data.pixels import to_unit
from training.config import DataConfig

T = TypeVar("T")


class DataError(UserError, ValueError):
    """A dataset that cannot be trained on; the message says why and what to do."""

    def __init__(self, message: str) -> None:
        # Raised in a loader worker, it reaches the trainer rebuilt from "Caught DataError in
        # DataLoader worker process N.\nOriginal Traceback ...\nmodule.DataError: MESSAGE" (see
        # torch's ExceptionWrapper): keep only the message.
        if message.startswith("Caught ") and "\nOriginal Traceback" in message:
            message = message.rsplit(f"{type(self).__module__}.{type(self).__qualname__}: ", 1)[-1]
        super().__init__(message.strip())


class StorageUnavailable(DataError):
    """The object store stayed unreachable for `data.download_retry_s`: the run stops to be
    requeued (training.__main__), not failed; the message names the file and the endpoint."""


def decode_frames(value: Any) -> np.ndarray:
    """The `frames` column as a (T, H, W, 3) uint8 array, whichever way the MDS column decoded."""
    if isinstance(value, np.ndarray):
        return value
    return codec.decode_frames(value)


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
    video = to_unit(video)
    if video.shape[-2:] != (resolution, resolution):
        # Area averaging: downsampling a rendered ball keeps its soft edge and its centroid.
        video = F.interpolate(video, size=(video.shape[2], resolution, resolution), mode="area")
    return video


def video_tensor(frames: np.ndarray, num_frames: int, resolution: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, num_frames, resolution, resolution) float in [-1, 1]."""
    return to_unit_range(video_uint8(frames, num_frames)[None], resolution)[0]


def endpoint() -> str:
    """The S3 endpoint downloads go to (for messages)."""
    return os.environ.get("S3_ENDPOINT_URL") or "AWS S3"


def _transient(err: BaseException) -> bool:
    """Whether a failed request may succeed if retried: network errors, timeouts, 5xx and
    throttling, not a missing object, denied access or a corrupt file."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(err, ClientError):
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = err.response.get("Error", {}).get("Code", "")
        return status >= 500 or status in (408, 429) or code in ("SlowDown", "Throttling")
    return isinstance(err, BotoCoreError | Boto3Error | ConnectionError | TimeoutError)


def retrying(fetch: Callable[[], T], what: str, retry_s: float) -> T:
    """`fetch()`, retried with exponential backoff (1, 2, 4 ... 30 s, each x0.5-1.5) while it fails
    for a transient reason; after `retry_s` seconds of that, `StorageUnavailable` naming `what`."""
    jitter = random.Random()  # not the global generator: training's random state stays as seeded
    start, delay = time.monotonic(), 1.0
    while True:
        try:
            return fetch()
        except Exception as err:
            waited = time.monotonic() - start
            if not _transient(err):
                raise
            pause = delay * (0.5 + jitter.random())
            if waited + pause > retry_s:
                raise StorageUnavailable(
                    f"cannot download {what} from the S3 endpoint {endpoint()}: still failing "
                    f"after {waited:.0f} s of retries (data.download_retry_s={retry_s:g}): "
                    f"{type(err).__name__}: {str(err).rstrip('.')}. Under Slurm the job is "
                    f"requeued and resumes from its last checkpoint; otherwise run the same "
                    f"command again once the store is back"
                ) from None
            print(
                f"[rank {os.environ.get('RANK', 0)}] download of {what} failed "
                f"({type(err).__name__}: {err}); retrying in {pause:.1f} s",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(pause)
            delay = min(2 * delay, 30.0)


class VerifiedStream(Stream):
    """A dataset root as streaming reads it, whose downloads retry (`retrying`) and are checked
    against the manifest's sha256 before streaming may read them.

    `sha256`: index basename -> digest (index.json and every shard); empty to check nothing.
    """

    def __init__(self, *, sha256: dict[str, str], retry_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sha256, self.retry_s = sha256, retry_s

    def _download_file(self, from_basename: str, to_basename: str | None = None) -> str:
        local = os.path.join(self.local, self.split, to_basename or from_basename)
        if self.remote is None or os.path.exists(local):
            return local
        remote = os.path.join(self.remote, self.split, from_basename)
        unverified = local + ".unverified"

        def fetch() -> None:
            try:
                self._downloader.download(remote, unverified, self.download_timeout)
            except Exception:
                self._downloader.clean_up()  # a new client, not a pool of broken connections
                raise

        retrying(fetch, f"{from_basename} of {self.remote}", self.retry_s)
        self.check(unverified, from_basename)
        os.replace(unverified, local)  # only checked files are where streaming reads
        return local

    def check(self, path: str, basename: str) -> None:
        """`DataError` naming the shard and the fix if the file at `path` is not the one the
        manifest recorded (the file is deleted if it is a download)."""
        expected = self.sha256.get(basename)
        if expected is None or sha256_file(path) == expected:
            return
        if path.endswith(".unverified"):
            os.unlink(path)
        raise DataError(str(shards.shard_error(self.remote or self.local, basename)))

    def check_local(self, shard: Reader) -> None:
        """Check a shard of a local dataset (remote ones were checked when downloaded)."""
        if self.remote is None:
            for raw_info, _ in shard.file_pairs:
                self.check(
                    os.path.join(self.local, self.split, raw_info.basename), raw_info.basename
                )


class PhysicsVideos(StreamingDataset):
    """A StreamingDataset whose samples are training tensors (videos or latents) and their index,
    read from a `VerifiedStream`, and whose download failures reach the trainer instead of hanging
    it."""

    def __init__(self, cfg: DataConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_cfg = cfg
        self._checked: set[int] = set()  # shards this process has checked
        self._fetch_error: BaseException | None = None

    def prepare_shard(self, shard_id: int, blocking: bool = True) -> None:
        # Streaming leaves a shard whose download raised PREPARING forever, so every reader waits
        # for it, and its download threads die quietly: the epoch just ends early, or the main
        # thread waits for that shard forever. Mark it remote again (another reader retries it),
        # and keep the error for the thread that iterates (`get_item`, `__iter__`).
        if self._fetch_error is not None:  # no new downloads once one failed
            if blocking:
                raise self._fetch_error
            return
        try:
            super().prepare_shard(shard_id, blocking)
        except Exception as err:
            with self._cache_filelock:
                if self._shard_states[shard_id] == _ShardState.PREPARING:
                    self._shard_states[shard_id] = _ShardState.REMOTE
            self._fetch_error = err
            if hasattr(self, "_event"):
                self._event.set()  # the download threads and the sample loop stop
            if blocking:  # the iterating thread itself: raise here
                raise

    def get_item(self, sample_id: int, retry: int = 7) -> Any:
        if self._fetch_error is not None:
            raise self._fetch_error
        shard_id, _ = self.spanner[sample_id]
        if shard_id not in self._checked:
            self.streams[self.stream_per_shard[shard_id]].check_local(self.shards[shard_id])
            self._checked.add(shard_id)
        return super().get_item(sample_id, retry)

    def __iter__(self) -> Any:
        if self._fetch_error is None:
            yield from super().__iter__()
        if self._fetch_error is not None:  # the download threads failed: the epoch is cut short
            raise self._fetch_error

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = super().__getitem__(index)
        if self.data_cfg.kind == "latents":
            latents = torch.from_numpy(np.asarray(sample["latents"], dtype=np.float32))
            return {"latents": latents[:, : self.data_cfg.frames], "index": index}
        frames = video_uint8(decode_frames(sample["frames"]), self.data_cfg.frames)
        return {"video": frames, "index": index}


def whole_epoch(cfg: DataConfig, multiple: int) -> int | None:
    """The epoch size that is a whole number of `multiple` samples, or None when the dataset's
    size already is one (read from its MDS index, retried like a download)."""
    index = retrying(
        lambda: storage.read_text(storage.join(cfg.path, shards.INDEX)),
        f"{shards.INDEX} of {cfg.path}",
        cfg.download_retry_s,
    )
    count = sum(shard["samples"] for shard in json.loads(index)["shards"])
    if count < multiple:
        raise DataError(
            f"dataset {cfg.path} has {count} samples, fewer than one global batch ({multiple}, "
            "with the canonical nodes); use a larger dataset or a smaller "
            "parallel.global_batch_size"
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
    for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


@atexit.register  # registered after multiprocessing's own exit handler, so it runs before it
def _kill_loader_workers() -> None:
    """At exit, kill the loader workers still alive (a loader left mid-epoch: a run that stops at
    max_steps or on an error). multiprocessing's exit handler would send them SIGTERM, which they
    ignore (`_ignore_job_signals`), then wait for them forever. Torch's SIGCHLD handler goes
    first: it would report their end as a crash."""
    workers = [p for p in multiprocessing.active_children() if p.daemon]
    if not workers:
        return
    if multiprocessing.current_process().name == "MainProcess":
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for worker in workers:
        worker.kill()
        worker.join()


# Where the local leaders of every job on a node take turns registering with streaming: beside the
# shared memory itself, so every process that can collide there sees the same lock.
REGISTRATION_LOCK = (
    "/dev/shm/phyworld-streaming-registration.lock"
    if os.path.isdir("/dev/shm")
    else os.path.join(tempfile.gettempdir(), "phyworld-streaming-registration.lock")
)


@contextlib.contextmanager
def streaming_registration() -> Iterator[None]:
    """Hold the node's streaming registration lock (on streaming's local leader; other ranks pass
    through).

    Streaming finds the first free shared-memory prefix, then creates it, with nothing between:
    two jobs whose loaders start together on one node pick the same prefix, and the later dies
    with FileExistsError. Local leaders take turns instead; their job's other ranks wait at
    streaming's own barriers, so they must not take the lock. The leader is streaming's own
    (RANK modulo LOCAL_WORLD_SIZE), the process that registers."""
    if not World.detect().is_local_leader:
        yield
        return
    # read-only: flock needs no write access, so a lock file another user made works too
    fd = os.open(REGISTRATION_LOCK, os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def clean_stale_shared_memory_of(local: str) -> None:
    """Unlink the streaming shared memory that an earlier, killed process left registered for the
    local directory `local` (streaming refuses a directory another dataset still holds, so a
    requeued run on the same node would not start), and nothing else: streaming's own clean-up
    unlinks every dataset's, including those of jobs still running on the node. Streaming's local
    leader cleans; every rank waits for it."""
    import _posixshmem

    from streaming.base.constant import LOCALS, SHM_TO_CLEAN
    from streaming.base.shared import SharedMemory
    from streaming.base.shared.prefix import _each_prefix_int, _get_path, _unpack_locals

    if World.detect().is_local_leader:
        ours = os.path.abspath(local)
        for prefix in _each_prefix_int():  # registered prefixes are dense, as streaming scans them
            try:
                registry = SharedMemory(_get_path(prefix, LOCALS), False, auto_cleanup=False)
            except FileNotFoundError:
                break
            theirs, _ = _unpack_locals(bytes(registry.buf))
            registry.cleanup()  # detaches only
            if ours not in theirs:
                continue
            for name in SHM_TO_CLEAN:
                with contextlib.suppress(FileNotFoundError):
                    _posixshmem.shm_unlink(_get_path(prefix, name))
    if dist.is_initialized():
        dist.barrier()


def cache_dir(cfg: DataConfig, run_dir: str) -> str | None:
    """Local cache for a remote dataset: the same on every rank of a node, distinct per run."""
    if not cfg.path.startswith(("s3://", "gs://", "oci://", "azure://", "hf://")):
        return None
    if cfg.cache_dir:
        return cfg.cache_dir
    key = hashlib.sha1(f"{cfg.path}|{Path(run_dir).resolve()}".encode()).hexdigest()[:12]
    return str(Path(tempfile.gettempdir()) / "phyworld-streaming" / key)


def read_manifest(cfg: DataConfig) -> dict[str, Any] | None:
    """The dataset's manifest, checked against its index and shard sizes, on every rank (read on
    rank 0, retried like a download); None with `data.verify_manifest=false`. Every rank raises
    the same clear error."""
    if not cfg.verify_manifest:
        return None
    result: list[Any] = [None]
    if not dist.is_initialized() or dist.get_rank() == 0:
        try:
            result[0] = retrying(
                lambda: shards.verify_manifest(cfg.path), f"the manifest of {cfg.path}",
                cfg.download_retry_s,
            )  # fmt: skip
        except StorageUnavailable as err:
            result[0] = err
        except Exception as err:  # any failure is reported on every rank, not only rank 0
            result[0] = DataError(
                f"dataset {cfg.path} does not match its manifest ({type(err).__name__}: {err}). "
                "Regenerate or finish it with `python -m datagen`, or set "
                "data.verify_manifest=false to train on it anyway."
            )
    if dist.is_initialized():
        dist.broadcast_object_list(result, src=0)
    if isinstance(result[0], Exception):
        raise result[0]
    return result[0]


def build_dataloader(
    cfg: DataConfig,
    micro_batch_size: int,
    sequence_parallel_size: int,
    run_dir: str,
    pin_memory: bool = False,
    global_batch_size: int | None = None,
) -> StreamingDataLoader:
    """The shuffled, resumable loader for this rank (call on every rank, after dist init).

    `pin_memory` (on CUDA): batches arrive in page-locked memory, so the copy to the GPU can be
    asynchronous (`.to(device, non_blocking=True)`). `global_batch_size` (default: one
    micro-batch) sets what an epoch is a whole number of."""
    if cfg.kind not in ("videos", "latents"):
        raise DataError(f"data.kind={cfg.kind!r}: use videos or latents")
    manifest = read_manifest(cfg)
    sha256 = {}
    if manifest is not None:
        sha256 = {name: info["sha256"] for name, info in manifest["shards"].items()}
        sha256[shards.INDEX] = manifest["index_sha256"]
    cache = cache_dir(cfg, run_dir)
    stream = VerifiedStream(
        remote=cfg.path if cache else None,
        local=cache or cfg.path,
        sha256=sha256,
        retry_s=cfg.download_retry_s,
        download_timeout=cfg.download_timeout_s,
    )
    canonical = cfg.num_canonical_nodes or loader_nodes(sequence_parallel_size)
    epoch = math.lcm(global_batch_size or micro_batch_size, canonical)
    epoch_size = whole_epoch(cfg, epoch)
    with streaming_registration():
        clean_stale_shared_memory_of(cache or cfg.path)
        dataset = PhysicsVideos(
            cfg,
            streams=[stream],
            epoch_size=epoch_size,
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
        pin_memory=pin_memory,
    )
