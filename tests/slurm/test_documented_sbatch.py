"""The documented Slurm commands, submitted to the local cluster (tests/doc_commands.py).

Every `slurm/submit.sh ...` command of README.md and docs/*.md goes to sbatch with `--test-only`
(its resources fit the cluster: the `gpu` partition has the paper's 8 nodes x 8 GPUs), and every
`slurm/datagen.sh ...` command really submits its array and merge, held, then cancelled.
"""

from __future__ import annotations

import os
import re
import sys

import pytest
from doc_commands import REPO, documented_commands

COMMANDS = documented_commands()


@pytest.mark.slow
def test_documented_sbatch_requests_fit_the_cluster(slurm_cluster, tmp_path) -> None:
    env = {"PHYWORLD_LOG_ROOT": str(tmp_path), "PHYWORLD_PARTITION": "gpu"}
    submitted = [c for c in COMMANDS if c.slurm()]
    assert len(submitted) >= 4
    for command in submitted:
        options, script, args = command.slurm()
        out = slurm_cluster.run(
            str(REPO / "slurm" / "submit.sh"), "--test-only", *options, str(REPO / script),
            *args, check=False, cwd=REPO, **env,
        )  # fmt: skip
        assert re.search(r"to start at .* in partition gpu", out), f"{command}\n{out}"


@pytest.mark.slow
def test_documented_datagen_arrays_submit(slurm_cluster, s3_server, tmp_path) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server)
    for bucket in ("bucket", "my-bucket"):
        if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=bucket)
    env = {
        "PHYWORLD_LOG_ROOT": str(tmp_path),
        "PHYWORLD_PYTHON": sys.executable,
        "PYTHONPATH": str(REPO),
        "SBATCH_HOLD": "1",  # submitted for real, but never started
        "S3_ENDPOINT_URL": s3_server,  # the docs' s3:// outputs: the test server
        **{k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")},
    }
    arrays = [c for c in COMMANDS if c.datagen_array() is not None]
    assert arrays
    for command in arrays:
        argv = list(command.argv[1:] if command.argv[0] == "bash" else command.argv)
        out = slurm_cluster.run(
            str(REPO / argv[0]), *argv[1:], check=False, cwd=REPO, timeout=300, **env
        )
        ids = re.findall(r"^(\d+) (\d+)$", out, re.M)
        assert ids, f"{command}\n{out}"
        slurm_cluster.run("scancel", *ids[-1], check=False)
