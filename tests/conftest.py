"""Shared test fixtures: a real S3-compatible server (moto) on 127.0.0.1.

`s3_server` (session) starts `python -m moto.server` in its own process on a free port, points
the AWS_* variables and S3_ENDPOINT_URL at it (for this process and every subprocess a test
starts), and creates the bucket `phyworld-test`. `s3_url` gives each test a fresh
`s3://phyworld-test/<unique prefix>`. Nothing is mocked: boto3 and mosaicml-streaming talk HTTP
to the server.
"""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest
from harness import start_moto

S3_BUCKET = "phyworld-test"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """Endpoint URL of a running moto S3 server with bucket `phyworld-test` created."""
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")  # noqa: SIM115
    proc, endpoint = start_moto(log)
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "S3_ENDPOINT_URL": endpoint,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=S3_BUCKET)
    yield endpoint
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture
def s3_url(s3_server, request) -> str:
    """A fresh, empty `s3://phyworld-test/...` prefix for one test."""
    return f"s3://{S3_BUCKET}/{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------------------------
#   A finished session exits, or says what keeps it alive
# ---------------------------------------------------------------------------------------------


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config) -> None:
    """After the summary the process has 120 s to exit. If something keeps it alive (a child
    process that ignores SIGTERM, which multiprocessing joins at exit; a thread that never ends),
    every thread's stack goes to stderr and the process exits with status 1: a red CI run that
    names the culprit, not a run that waits until CI's own time limit kills it silently."""
    import faulthandler
    import sys

    faulthandler.dump_traceback_later(120, exit=True, file=sys.stderr)
