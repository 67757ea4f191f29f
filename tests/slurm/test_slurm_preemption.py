"""Stopping on a real Slurm: the real slurm/train_s.sh, 2 CPU tasks, a tiny DiT.

- The time-limit warning (`scancel --signal=USR1 --batch`, what `--signal=B:USR1@N` sends), then
  a preemption by a job of the higher-priority partition `high` (PreemptMode=REQUEUE, 15 s grace:
  SIGTERM to the tasks, requeue at the end of the grace time). The first time the job requeues
  itself, the second time Slurm does; its final weights must be bit-identical to those of an
  uninterrupted run of the same script.
- A plain `scancel`: the job checkpoints, ends CANCELLED, and stays cancelled.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import phyworld  # noqa: F401  (before streaming)
from training.checkpoint import is_complete

REPO = Path(__file__).resolve().parents[2]
MAX_STEPS = 100  # enough steps that the job is still training when the preemption lands
STEP_LINE = re.compile(r"^step\s+(\d+) \|", re.M)


@pytest.fixture(scope="module")
def uniform_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 videos of a red ball moving right (8 frames, 32x32) as MDS, frames as raw uint8."""
    from streaming import MDSWriter

    out = tmp_path_factory.mktemp("data") / "uniform_tiny"
    rng = np.random.default_rng(0)
    centres = (np.arange(32) + 0.5) * 10.0 / 32
    xx, yy = np.meshgrid(centres, 10.0 - centres)
    with MDSWriter(out=str(out), columns={"id": "str", "frames": "ndarray:uint8"}) as writer:
        for i in range(48):
            v, r = rng.uniform(1, 4), rng.uniform(0.7, 1.4)
            d2 = (xx[None] - 2.0 - v * 0.1 * np.arange(8)[:, None, None]) ** 2 + (
                yy[None] - 5.0
            ) ** 2
            alpha = np.clip((r * r - d2) / (0.03 * r * r), 0, 1)[..., None]
            frames = 255 - alpha * np.array([0, 255, 255])  # red ball on white
            writer.write({"id": f"tiny-{i:09d}", "frames": frames.round().astype(np.uint8)})
    return out


def train_args(data: Path, run: Path) -> list[str]:
    return [
        str(REPO / "configs" / "train" / "tiny_cpu.yaml"),
        "model.size=tiny",
        f"data.path={data}",
        "data.num_workers=0",
        "data.verify_manifest=false",
        f"output_dir={run}",
        f"max_steps={MAX_STEPS}",
        "parallel.micro_batch_size=2",
        "logging.every_steps=1",
        "logging.video_every_steps=0",
        "checkpoint.every_steps=1000",  # checkpoints only when preempted and at the end
    ]


SBATCH = [
    "--nodes=1",
    "--ntasks-per-node=2",
    "--cpus-per-task=1",
    "--oversubscribe",  # instead of the script's --exclusive: jobs side by side on cpu1
    "--gpus-per-node=0",
    "--time=15:00",
]


def attempt_steps(log: str, attempt: int) -> list[int]:
    """Steps logged by one attempt (restart count) of the job, from its appended output."""
    parts = re.split(r"start: SLURM_RESTART_COUNT=(\d+)", log)
    steps: list[int] = []
    for count, text in zip(parts[1::2], parts[2::2]):
        if int(count) == attempt:
            steps += [int(s) for s in STEP_LINE.findall(text)]
    return steps


def wait_for_step(log_path: Path, attempt: int, at_least: int, timeout: float = 180) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = log_path.read_text() if log_path.is_file() else ""
        steps = attempt_steps(log, attempt)
        if steps and max(steps) >= at_least:
            return max(steps)
        time.sleep(0.2)
    tail = log_path.read_text()[-3000:] if log_path.is_file() else "(no log)"
    raise AssertionError(f"attempt {attempt} did not reach step {at_least}:\n{tail}")


@pytest.mark.slow
def test_time_limit_then_preemption_resume_bit_identical(
    slurm_cluster, uniform_tiny: Path, tmp_path: Path
) -> None:
    env = {"PHYWORLD_LOG_ROOT": str(tmp_path / "logs"), "PHYWORLD_PYTHON": sys.executable}
    script = str(REPO / "slurm" / "train_s.sh")
    straight, preempted = tmp_path / "straight", tmp_path / "preempted"
    # The reference runs in `high`, which nothing preempts.
    ref = slurm_cluster.submit(
        *SBATCH, "--partition=high", script, *train_args(uniform_tiny, straight), **env
    )
    job = slurm_cluster.submit(*SBATCH, script, *train_args(uniform_tiny, preempted), **env)
    log_path = tmp_path / "logs" / f"phyworld-train-s-{job}.out"
    # Held until the second event; then it needs all of cpu1's 8 CPUs, so Slurm preempts the job.
    preemptor = slurm_cluster.submit(
        "--partition=high", "--hold", "--ntasks=8", "--gpus-per-node=0", "--wrap", "sleep 5", **env
    )

    # 1: the time-limit warning, which Slurm sends to the batch shell only: the job requeues itself.
    wait_for_step(log_path, attempt=0, at_least=3)
    slurm_cluster.run("scancel", "--signal=USR1", "--batch", str(job))
    first_stop = _stopped_steps(log_path)
    # 2: once the requeued job trains again, a preemption: Slurm requeues it.
    slurm_cluster.wait(ref, {"COMPLETED"}, timeout=300)  # `high` jobs do not preempt each other
    wait_for_step(log_path, attempt=1, at_least=first_stop[0] + 1)
    slurm_cluster.run("scontrol", "release", str(preemptor))

    info = slurm_cluster.wait(job, {"COMPLETED"}, timeout=400)
    log = log_path.read_text()
    stops = _stopped_steps(log_path)
    assert int(info["Restarts"]) == 2, log[-3000:]
    assert len(stops) == 2 and stops[0] < stops[1] < MAX_STEPS, stops  # two different steps
    assert "USR1: forwarding to the tasks" in log
    assert "requeueing the job, as the training asked after the time-limit warning" in log
    assert "not asking for a requeue, Slurm decides" in log  # the preemption's SIGTERM
    assert "the job is being preempted: waiting for Slurm to requeue it" in log
    assert "DUE TO PREEMPTION" in log
    for attempt, resumed_at in ((1, stops[0]), (2, stops[1])):
        assert f"SLURM_RESTART_COUNT={attempt}" in log
        assert min(attempt_steps(log, attempt)) == resumed_at + 1, (
            f"attempt {attempt} did not resume"
        )
    assert max(attempt_steps(log, 2)) == MAX_STEPS
    assert "Traceback" not in log  # no KeyError from a killed resource tracker either

    final = f"checkpoints/step_{MAX_STEPS:08d}/weights.pt"
    a = torch.load(straight / final, weights_only=True)
    b = torch.load(preempted / final, weights_only=True)
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for name in a[part]:
            assert torch.equal(a[part][name], b[part][name]), f"{part}.{name} differs"


@pytest.mark.slow
def test_scancel_cancels_with_a_checkpoint(
    slurm_cluster, uniform_tiny: Path, tmp_path: Path
) -> None:
    env = {"PHYWORLD_LOG_ROOT": str(tmp_path / "logs"), "PHYWORLD_PYTHON": sys.executable}
    run = tmp_path / "run"
    job = slurm_cluster.submit(
        *SBATCH, str(REPO / "slurm" / "train_s.sh"), *train_args(uniform_tiny, run), **env
    )
    log_path = tmp_path / "logs" / f"phyworld-train-s-{job}.out"
    wait_for_step(log_path, attempt=0, at_least=3)
    slurm_cluster.run("scancel", str(job))
    stopped = _stopped_steps(log_path)
    assert len(stopped) == 1 and stopped[0] < MAX_STEPS, stopped
    saved = run / "checkpoints" / f"step_{stopped[0]:08d}"
    assert is_complete(saved) and (run / "checkpoints" / "latest").read_text() == saved.name
    time.sleep(15)  # longer than a requeued job waits before it starts again (cred_expire 10 s)
    info = slurm_cluster.job(job)
    assert (info["JobState"], info["Restarts"]) == ("CANCELLED", "0"), info
    log = log_path.read_text()
    assert "not asking for a requeue, Slurm decides" in log and "Traceback" not in log
    assert "SLURM_RESTART_COUNT=1" not in log


def _stopped_steps(log_path: Path, timeout: float = 120) -> list[int]:
    """Steps at which the job checkpointed on a signal ("stopped by signal after step N")."""
    deadline = time.monotonic() + timeout
    while True:
        found = [
            int(s) for s in re.findall(r"stopped by signal after step (\d+)", log_path.read_text())
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)
