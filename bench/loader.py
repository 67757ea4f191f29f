"""Training-loader throughput: samples/s per loader worker, against what one GPU eats at DiT-S.

    python bench/loader.py [--count 128] [--resolution 128] [--frames 32] [--workers 1,2]

Makes a kinematics dataset with `python -m datagen` (uniform motion, 128x128x32 by default) on
local disk and on a real S3 server (moto, started here on 127.0.0.1), then reads it with the
training loader (`training.data.build_dataloader`: MDS shards, zstd frame decoding, resize, float
tensors) with 1, 2, ... worker processes, from a cold cache (S3: shards downloaded during the pass),
timing from the first batch on (worker start-up is printed apart).

The baseline, computed in the same run: samples/s one GPU consumes training DiT-S on these
videos, model FLOPs per sample (training.metrics) / (peak TFLOP/s x MFU). The ratio printed is
worker throughput / GPU demand; its inverse is how many workers one GPU needs.

Also the cost of the loader's shard checksums (sha256 of each shard once, against manifest.json),
per sample, as a fraction of one worker's time per sample measured in the same run.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import phyworld  # noqa: E402, F401  (before streaming)
from datagen.__main__ import main as datagen  # noqa: E402
from phyworld.config import load_config  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.data import build_dataloader  # noqa: E402
from training.metrics import train_flops_per_sample  # noqa: E402
from training.model import DIT_CONFIGS  # noqa: E402

DIT_S_PARAMS = 22.5e6  # the paper's count (4 latent channels, patch 2)


def start_s3() -> tuple[subprocess.Popen, str]:
    """A moto S3 server on a free port with bucket `bench`; AWS_* variables point at it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        S3_ENDPOINT_URL=endpoint,
    )
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
    return proc, endpoint


def make(root: str, args: argparse.Namespace) -> None:
    base = str(REPO / "configs" / "data" / "uniform_base.yaml")
    overrides = [f"output={root}", "sampling=random", f"count={args.count}", "progress=false"]
    overrides += [f"frames={args.frames}", f"resolution={args.resolution}"]
    assert datagen([base, *overrides]) == 0, f"datagen failed for {root}"


def samples_per_s(
    path: str, workers: int, args: argparse.Namespace, scratch: Path
) -> tuple[float, float]:
    """One cold pass with the training loader: (samples/s after the first batch, first batch s)."""
    cfg = load_config(
        TrainConfig,
        [
            "output_dir=/unused",
            f"data.path={path}",
            f"data.frames={args.frames}",
            f"data.resolution={args.resolution}",
            f"data.num_workers={workers}",
            f"data.cache_dir={tempfile.mkdtemp(dir=scratch)}",
        ],
    )
    loader = build_dataloader(cfg.data, args.batch, 1, str(scratch))
    start = time.perf_counter()
    n, first = 0, 0.0
    for batch in loader:
        if n == 0:  # worker start-up is paid once per run, not per sample: time the rest
            first, start = time.perf_counter() - start, time.perf_counter()
        n += batch["video"].shape[0]
    elapsed = time.perf_counter() - start
    del loader
    return (n - args.batch) / elapsed, first


def checksum_s_per_sample(root: str, count: int) -> float:
    """Seconds per sample to sha256 every shard of a local dataset once (what the loader checks)."""
    from phyworld.data import shards
    from phyworld.data.digest import sha256_file

    names = list(shards.read_manifest(root)["shards"])
    start = time.perf_counter()
    for name in names:
        sha256_file(Path(root, name))
    return (time.perf_counter() - start) / count


def gpu_demand(args: argparse.Namespace) -> tuple[float, float]:
    """(samples/s one GPU consumes at DiT-S, FLOPs per sample) for these videos."""
    size = DIT_CONFIGS["S"]
    latent = args.resolution // args.vae_downsample // 2  # VAE, then 2x2 patches
    tokens = args.frames * latent * latent
    flops = train_flops_per_sample(int(DIT_S_PARAMS), tokens, size.depth, size.hidden_size)
    return args.peak_tflops * 1e12 * args.mfu / flops, flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--vae-downsample", type=int, default=8)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="H100 dense bf16")
    parser.add_argument("--mfu", type=float, default=0.4)
    args = parser.parse_args()

    demand, flops = gpu_demand(args)
    print(
        f"baseline: one GPU training DiT-S on {args.frames}x{args.resolution}^2 videos consumes "
        f"{demand:.0f} samples/s ({flops / 1e9:.0f} GFLOP/sample at {args.mfu:.0%} of "
        f"{args.peak_tflops:g} TFLOP/s)"
    )
    s3, _ = start_s3()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            scratch = Path(tmp)
            local = str(scratch / "uniform")
            remote = "s3://bench/uniform"
            for root in (local, remote):
                make(root, args)
            print(
                f"dataset: {args.count} videos, local and s3 (moto); batch {args.batch}, cold cache"
            )
            print(
                "| source | workers | first batch s | samples/s | per worker | per worker / GPU demand "
                "| workers per GPU |"
            )
            print("|---|---|---|---|---|---|---|")
            per_worker = {}
            for source, path in (("local", local), ("s3", remote)):
                for workers in [int(w) for w in args.workers.split(",")]:
                    rate, first = samples_per_s(path, workers, args, scratch)
                    per_worker[source, workers] = rate / max(1, workers)
                    per = rate / max(1, workers)
                    print(
                        f"| {source} | {workers} | {first:.1f} | {rate:.0f} | {per:.0f} | "
                        f"x{per / demand:.3f} | "
                        f"{math.ceil(demand / per)} |",
                        flush=True,
                    )
            check = checksum_s_per_sample(local, args.count)
            worker = 1 / per_worker["local", int(args.workers.split(",")[0])]
            print(
                f"checksums: sha256 of every shard once = {check * 1e6:.1f} us/sample, "
                f"x{check / worker:.4f} of a worker's {worker * 1e3:.2f} ms/sample (local)"
            )
    finally:
        s3.terminate()
        s3.wait(timeout=10)


if __name__ == "__main__":
    main()
