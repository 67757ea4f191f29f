"""What the training, parallel and Slurm tests share: ports, a tiny dataset, and real training runs.

`run_training` launches `python -m training` (one process) or torchrun (several) on CPU, in a
clean environment (no SLURM_* or torch.distributed variables leak in from the caller), and
`logged_losses` reads back the loss of every step from the run's TensorBoard events.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

import phyworld  # noqa: F401  (before streaming)

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "train" / "tiny_cpu.yaml"
_LAUNCH_VARS = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
)


def free_port() -> int:
    """A TCP port nobody listens on right now (for a rendezvous or a server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(log: IO[bytes]) -> tuple[subprocess.Popen, str]:
    """A moto S3 server on a free port of 127.0.0.1, logging to `log`: (process, endpoint URL)."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            return proc, endpoint
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(
                    f"moto server did not start on port {port}; see {log.name}"
                ) from None
            time.sleep(0.2)


def make_dataset(
    root: Path | str, count: int = 64, frames: int = 8, resolution: int = 32, *extra: str
) -> Path:
    """A small uniform-motion dataset made by `python -m datagen` (MDS + manifest); `extra`:
    more overrides (`part_size=8`: a shard per 8 videos)."""
    from datagen.__main__ import main as datagen

    args = [
        str(REPO / "configs" / "data" / "uniform_base.yaml"),
        f"output={root}",
        "sampling=random",
    ]
    args += [f"count={count}", f"frames={frames}", f"resolution={resolution}", "progress=false"]
    args += extra
    assert datagen(args) == 0
    return Path(root)


def train_env() -> dict[str, str]:
    """This process's environment for a CPU training run started outside any launcher or job."""
    env = {
        k: v for k, v in os.environ.items() if k not in _LAUNCH_VARS and not k.startswith("SLURM_")
    }
    env.update(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def run_training(
    args: list[str],
    nproc: int = 1,
    timeout: float = 600,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """`python -m training ARGS` (nproc 1) or torchrun with `nproc` processes, in `train_env()`
    updated with `env`; with `check`, a failed run fails the test with the end of its output."""
    cmd = [sys.executable, "-m", "training", *args]
    if nproc > 1:
        launcher = ["-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
        cmd = [sys.executable, *launcher, f"--master_port={free_port()}", *cmd[1:]]
    env = {**train_env(), **(env or {})}
    result = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"training failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
    return result


def logged_losses(run: Path) -> dict[int, float]:
    """step -> train/loss over every TensorBoard event file of a run (one per launch)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[int, float] = {}
    for events in sorted((run / "tb").glob("events.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        out.update({e.step: e.value for e in acc.Scalars("train/loss")})
    return out


def flip(file: Path, count: int = 64) -> None:
    """Invert `count` bytes in the middle of `file`, its size unchanged (silent disk corruption)."""
    data = bytearray(file.read_bytes())
    start = max(0, len(data) // 2 - count // 2)
    for i in range(start, min(len(data), start + count)):
        data[i] ^= 0xFF
    file.write_bytes(bytes(data))


class _Payload:
    """Unpickling this runs `touch marker`: what a crafted checkpoint could do when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def craft_pickle(file: Path, marker: Path) -> None:
    """Write to `file` a torch checkpoint whose unpickling (weights_only=False) creates `marker`."""
    import torch

    torch.save({"rng": _Payload(marker), "ema": {}}, file)


def launched_shape(args: list[str], world_size: int):
    """What `python -m training ARGS` checks at start on `world_size` processes, before it builds
    anything (a first launch): the layout fitted to the ranks (`checkpoint.fit_layout`: an
    explicit `parallel.global_batch_size` split into micro-batch x accumulation), then the
    engine's rules (`engine.run_shape`). Returns (config as launched, RunShape); raises the
    entry point's error."""
    from types import SimpleNamespace

    from phyworld.config import load_config
    from training.checkpoint import fit_layout
    from training.config import TrainConfig
    from training.engine import run_shape

    cfg = load_config(TrainConfig, [*args, "checkpoint.resume=false"])
    sp = cfg.parallel.sequence_parallel_size
    ranks = SimpleNamespace(world_size=world_size, sp_size=sp, dp_size=max(world_size // sp, 1))
    cfg, _ = fit_layout(cfg, ranks)
    return cfg, run_shape(cfg, world_size)
