"""S3 outages during training, through a fault-injecting proxy in front of real moto servers.

A short outage and a replaced server cost retries, not the run: the losses are those of a run
without them. An outage longer than `data.download_retry_s` stops the run with the shard and the
endpoint named (no traceback, no hang) and asks Slurm to requeue the job.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import boto3
import pytest
from faultproxy import FaultProxy
from harness import TINY_CONFIG, logged_losses, make_dataset, run_training, start_moto

from phyworld import storage

pytestmark = pytest.mark.slow
STEPS = 12  # x 8 videos: one epoch of the 96-video dataset, so every shard is downloaded
BUCKET = "phyworld-test"  # tests/conftest.py's


@pytest.fixture(scope="module")
def dataset(s3_server: str) -> str:
    """96 videos on the session's S3 server, a shard per 8 (12 shards to download)."""
    url = f"s3://{BUCKET}/outage-{uuid.uuid4().hex[:8]}"
    make_dataset(url, 96, 8, 32, "part_size=8")
    return url


def train(
    run: Path, dataset: str, endpoint: str, *args: str, env: dict | None = None, check=True
) -> subprocess.CompletedProcess:
    """The tiny recipe on `dataset`, whose S3 endpoint is `endpoint`, logging every step."""
    argv = [str(TINY_CONFIG), f"data.path={dataset}", f"output_dir={run}", f"max_steps={STEPS}"]
    argv += ["logging.every_steps=1", "logging.video_every_steps=0", *args]
    env = {"S3_ENDPOINT_URL": endpoint, **(env or {})}
    return run_training(argv, env=env, timeout=300, check=check)


def copy_dataset(dataset: str, endpoint: str) -> None:
    """The dataset, object by object, into the same bucket of the server at `endpoint`."""
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=BUCKET)
    prefix = storage.split_s3(dataset)[1]
    for name in storage.list_files(dataset):
        data = storage.read_bytes(storage.join(dataset, name))
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/{name}", Body=data)


def port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def test_short_outage_and_restarted_server_change_nothing(
    dataset: str, s3_server: str, tmp_path: Path
) -> None:
    train(tmp_path / "ref", dataset, s3_server)

    servers = [start_moto(open(tmp_path / f"moto{i}.log", "wb")) for i in range(2)]  # noqa: SIM115
    try:
        for _, endpoint in servers:
            copy_dataset(dataset, endpoint)
        proxy = FaultProxy(port(servers[0][1]))

        def restart() -> None:  # the first server dies; the second serves after 2 s
            servers[0][0].kill()
            proxy.outage(2)
            proxy.replace_upstream(port(servers[1][1]))

        proxy.on_request("shard.", 3, lambda: proxy.outage(5))
        proxy.on_request("shard.", 12, restart)
        result = train(tmp_path / "faults", dataset, proxy.endpoint)
    finally:
        for proc, _ in servers:
            proc.kill()
    assert proxy.fired == 2 and "retrying in" in result.stderr
    assert logged_losses(tmp_path / "faults") == logged_losses(tmp_path / "ref")
    assert len(logged_losses(tmp_path / "ref")) == STEPS


def test_long_outage_names_shard_and_endpoint_and_requeues(
    dataset: str, s3_server: str, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    (bin_dir / "scontrol").chmod(0o755)
    proxy = FaultProxy(port(s3_server))
    proxy.on_request("shard.", 3, lambda: proxy.outage(60))
    result = train(
        tmp_path / "run",
        dataset,
        proxy.endpoint,
        "data.download_retry_s=3",  # the outage lasts 20 times longer
        "data.num_workers=1",  # the error crosses a loader worker's process boundary
        check=False,
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": "4242"},
    )
    proxy.close()
    assert result.returncode == 75, result.stderr[-3000:]
    error = result.stderr[result.stderr.index("training: error:") :]
    assert "cannot download parts/part_000" in error and f"endpoint {proxy.endpoint}" in error
    assert "data.download_retry_s=3" in error and "Traceback" not in error
    assert (tmp_path / "scontrol.log").read_text() == "requeue 4242\n"
