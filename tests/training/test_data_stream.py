"""The training loader: MDS from a local directory or the S3 server, decoded and resized, resumable
mid-epoch, and refusing a dataset that does not match its manifest or a shard its checksum."""

from __future__ import annotations

import gc
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from harness import make_dataset

from phyworld import storage
from phyworld.config import load_config
from training import data
from training.config import DataConfig, TrainConfig
from training.data import DataError, build_dataloader, to_unit_range, video_tensor


def data_config(path: str, *overrides: str) -> DataConfig:
    cfg = load_config(
        TrainConfig,
        [
            "output_dir=/unused",
            f"data.path={path}",
            "data.frames=8",
            "data.resolution=32",
            "data.num_workers=0",
            *overrides,
        ],
    )
    return cfg.data


def first_batches(
    cfg: DataConfig, run_dir: Path, n: int, state: dict | None = None
) -> tuple[list[torch.Tensor], dict]:
    loader = build_dataloader(
        cfg, micro_batch_size=4, sequence_parallel_size=1, run_dir=str(run_dir)
    )
    if state is not None:
        loader.load_state_dict(state)
    out, saved = [], {}
    for i, batch in enumerate(loader):
        out.append(batch["video"])
        if i == 1:
            saved = loader.state_dict()
        if len(out) == n:
            break
    del loader
    gc.collect()
    return out, saved


def test_videos_decoded_resized_and_resumed(tiny_dataset: Path, tmp_path: Path) -> None:
    cfg = data_config(str(tiny_dataset))
    batches, state = first_batches(cfg, tmp_path, 4)
    assert batches[0].shape == (4, 3, 8, 32, 32) and batches[0].dtype == torch.uint8
    assert (
        batches[0].max() == 255
        and batches[0][:, 0].float().mean() > batches[0][:, 1].float().mean()
    )  # red on white
    assert not torch.equal(batches[0], batches[1])
    # A new loader given the state after batch 2 continues with batches 3 and 4.
    resumed, _ = first_batches(cfg, tmp_path, 2, state)
    assert torch.equal(resumed[0], batches[2]) and torch.equal(resumed[1], batches[3])

    # The trainer's side: floats in [-1, 1], area-resized to data.resolution.
    full = to_unit_range(batches[0], 32)
    assert full.dtype == torch.float32 and full.min() >= -1 and full.max() == 1
    assert torch.equal(full[0], video_tensor(batches[0][0].permute(1, 2, 3, 0).numpy(), 8, 32))
    small = to_unit_range(batches[0], 16)
    assert small.shape == (4, 3, 8, 16, 16)
    assert torch.allclose(small, torch.nn.functional.avg_pool3d(full, (1, 2, 2)), atol=1e-6)


def test_too_many_frames_asked(tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"samples have 8 frames but data.frames=16"):
        first_batches(data_config(str(tiny_dataset), "data.frames=16"), tmp_path, 1)


def test_dataset_not_matching_its_manifest(tiny_dataset: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dataset, broken)
    shard = next(broken.rglob("shard.*.mds"))
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"does not match its manifest.*regenerate"):
        first_batches(data_config(str(broken)), tmp_path, 1)


def flip_bytes(data: bytes) -> bytes:
    """The same size with 64 bytes inverted mid-file: only a checksum tells."""
    mid = len(data) // 2
    return data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 64]) + data[mid + 64 :]


@pytest.mark.parametrize("workers", [0, 1])
def test_corrupt_shard_is_named_before_it_is_decoded(
    tiny_dataset: Path, tmp_path: Path, workers: int
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dataset, broken)
    shard = next(broken.rglob("shard.*.mds"))
    shard.write_bytes(flip_bytes(shard.read_bytes()))
    name = shard.relative_to(broken)
    with pytest.raises(DataError, match=rf"shard {re.escape(f'{name} of {broken}')} does not") as e:
        first_batches(data_config(str(broken), f"data.num_workers={workers}"), tmp_path, 16)
    assert "Traceback" not in str(e.value)  # not the loader worker's, rebuilt in the trainer


class FakeClock:
    """`time` for `training.data.retrying`: sleeping advances the clock at once."""

    def __init__(self) -> None:
        self.now, self.sleeps = 0.0, []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_downloads_retry_with_backoff_only_what_may_pass(monkeypatch) -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError

    clock = FakeClock()
    monkeypatch.setattr(data, "time", clock)
    down = EndpointConnectionError(endpoint_url="http://store")
    failures = [down] * 5

    def fetch() -> str:
        if failures:
            raise failures.pop()
        return "shard bytes"

    assert data.retrying(fetch, "shard.00000.mds", retry_s=300) == "shard bytes"
    assert len(clock.sleeps) == 5  # 1, 2, 4, 8, 16 s, each x0.5-1.5
    assert all(0.5 <= pause / 2**i < 1.5 for i, pause in enumerate(clock.sleeps))

    missing = ClientError(
        {"Error": {"Code": "404"}, "ResponseMetadata": {"HTTPStatusCode": 404}}, "HeadObject"
    )
    failures[:] = [missing]
    with pytest.raises(ClientError):  # not retried: a missing object stays missing
        data.retrying(fetch, "shard.00000.mds", retry_s=300)
    assert len(clock.sleeps) == 5

    failures[:] = [down] * 100
    start = clock.now
    with pytest.raises(data.StorageUnavailable, match=r"shard.00000.mds from the S3 endpoint"):
        data.retrying(fetch, "shard.00000.mds", retry_s=60)
    assert len(clock.sleeps) > 8 and clock.now - start <= 60  # gave up within its budget


def test_corrupt_shard_on_s3_is_refused_when_downloaded(s3_url: str, tmp_path: Path) -> None:
    make_dataset(s3_url, count=16)
    name = next(n for n in storage.list_files(s3_url) if n.endswith(".mds"))
    url = storage.join(s3_url, name)
    storage.write_bytes(url, flip_bytes(storage.read_bytes(url)))
    cache = tmp_path / "cache"
    with pytest.raises(
        DataError, match=rf"shard {re.escape(f'{name} of {s3_url}')} does not.*Regen"
    ):
        first_batches(data_config(s3_url, f"data.cache_dir={cache}"), tmp_path, 1)
    assert not list(cache.rglob("shard.*"))  # nothing unchecked left for a later run to read


def test_streams_from_s3(s3_url: str, tmp_path: Path) -> None:
    make_dataset(s3_url, count=16)
    batches, _ = first_batches(
        data_config(s3_url, f"data.cache_dir={tmp_path / 'cache'}"), tmp_path, 2
    )
    assert batches[1].shape == (4, 3, 8, 32, 32)
    assert any((tmp_path / "cache").rglob("shard.*"))  # really downloaded


# A process that builds a loader (argv: dataset, run dir, workers, and optionally a file to wait
# for before it starts), takes one batch and exits.
ONE_BATCH = """
import os, sys, time
import phyworld
from phyworld.config import load_config
from training.config import DataConfig
from training.data import build_dataloader
path, run, workers, *go = sys.argv[1:]
cfg = load_config(DataConfig, [f"path={path}", "frames=8", "resolution=32", f"num_workers={workers}"])
while go and not os.path.exists(go[0]):
    time.sleep(0.01)
loader = iter(build_dataloader(cfg, 2, 1, run))
next(loader)
print("one batch", flush=True)
"""


def test_a_process_that_leaves_its_loader_mid_epoch_exits(tiny_dataset: Path, tmp_path) -> None:
    """Loader workers ignore SIGTERM (preemption is the trainer's), so multiprocessing's exit
    handler, which terminates them with it and then joins them, used to wait forever for a
    process that stopped reading mid-epoch (a run at max_steps, a test taking one batch)."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", ONE_BATCH, str(tiny_dataset), str(tmp_path / "run"), "2"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the process did not exit after taking one batch (loader workers left)")
    assert done.returncode == 0, done.stderr
    assert "one batch" in done.stdout


def test_a_loader_leaves_other_datasets_shared_memory_alone(
    tiny_dataset: Path, tmp_path, monkeypatch
) -> None:
    """Another dataset open on this node (another job's) keeps its streaming registration when a
    loader starts: streaming's own clean-up, called here before, unlinked every dataset's, and
    concurrent jobs then collided on the freed names (FileExistsError)."""
    import tempfile

    from streaming.base.constant import LOCALS
    from streaming.base.shared.prefix import _get_path

    # a fresh temp dir, as on a fresh node: no lock files of earlier datasets push the prefix up
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    other_root = make_dataset(tmp_path / "other", 16, 8, 32)
    other = build_dataloader(data_config(str(other_root)), 4, 1, str(tmp_path / "a"))
    registered = Path("/dev/shm") / _get_path(other.dataset._shm_prefix_int, LOCALS).lstrip("/")
    assert registered.exists()
    loader = build_dataloader(data_config(str(tiny_dataset)), 4, 1, str(tmp_path / "b"))
    # both alive: two registrations (the old clean-up unlinked the other's, and the new loader
    # took its name)
    assert registered.exists()
    assert loader.dataset._shm_prefix_int != other.dataset._shm_prefix_int
    del loader, other
    gc.collect()


def test_loaders_starting_together_on_one_node_each_register(tiny_dataset: Path, tmp_path) -> None:
    """Streaming finds a free shared-memory prefix and then creates it with nothing between: jobs
    whose loaders started at the same moment on one node (two runs of a study, training beside
    its eval) took the same prefix, and all but one died with FileExistsError."""
    from streaming.base.constant import BARRIER_FILELOCK
    from streaming.base.shared.prefix import _get_path

    go, node_tmp = tmp_path / "go", tmp_path / "tmp"
    node_tmp.mkdir()
    # a node's temp dir after many runs: streaming skips every prefix that left a lock file here,
    # so each loader scans a while before it registers (the window the jobs collided in)
    for prefix in range(30000):
        (node_tmp / _get_path(prefix, BARRIER_FILELOCK).lstrip("/")).touch()
    jobs = []
    for i in range(4):
        root = tmp_path / f"data{i}"  # a dataset of its own: streaming refuses a shared one
        shutil.copytree(tiny_dataset, root)
        jobs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    ONE_BATCH,
                    str(root),
                    str(tmp_path / f"run{i}"),
                    "2",  # DataConfig's default workers
                    str(go),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "TMPDIR": str(node_tmp)},
            )
        )
    time.sleep(8)  # every process imported and waiting
    go.touch()
    for job in jobs:
        out, err = job.communicate(timeout=120)
        assert job.returncode == 0, err[-2000:]
        assert "one batch" in out


def test_only_streamings_local_leader_takes_the_registration_lock(monkeypatch) -> None:
    """The other ranks of a job wait at streaming's barriers while their leader holds the lock:
    if they took it too, the node's jobs would deadlock. The leader is streaming's (RANK modulo
    LOCAL_WORLD_SIZE), whatever LOCAL_RANK says."""
    import fcntl
    import threading

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    held = os.open(data.REGISTRATION_LOCK, os.O_RDONLY | os.O_CREAT, 0o666)
    fcntl.flock(held, fcntl.LOCK_EX)  # another job's leader registering
    try:
        monkeypatch.setenv("RANK", "3")  # second process of its node
        with data.streaming_registration():
            pass  # did not wait for the lock
        monkeypatch.setenv("RANK", "2")  # first process of its node: waits its turn
        entered = threading.Event()

        def register() -> None:
            with data.streaming_registration():
                entered.set()

        waiter = threading.Thread(target=register)
        waiter.start()
        assert not entered.wait(1.0)
    finally:
        os.close(held)
    assert entered.wait(10.0)  # its turn came when the other leader was done
    waiter.join()
