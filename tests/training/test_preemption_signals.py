"""Preemption: a signal on one rank stops all ranks after the same step with a checkpoint, asks
Slurm to requeue, and the next launch resumes, also on another world size; a second signal during
the save is harmless; a hung step is reported with rank and step."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from harness import REPO, TINY_CONFIG, free_port, run_training, train_env

from training.checkpoint import is_complete


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_hung_step_names_rank_and_step() -> None:
    code = (
        "import time\nfrom training.preemption import StepWatchdog\n"
        "w = StepWatchdog(1.0, rank=3)\nw.beat(17, 'train step')\ntime.sleep(30)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 3
    assert "[rank 3] no progress for" in result.stderr and "at step 17" in result.stderr
    assert "collective_timeout_s" in result.stderr and "Thread" in result.stderr  # stacks dumped


def test_handler_flags_stop_and_save_on_demand() -> None:
    code = (
        "import os, signal\nfrom training.preemption import PreemptionHandler\n"
        "h = PreemptionHandler()\n"
        "os.kill(os.getpid(), signal.SIGUSR2); a = h.poll(); b = h.poll()\n"
        "os.kill(os.getpid(), signal.SIGTERM); os.kill(os.getpid(), signal.SIGUSR1); c = h.poll()\n"
        "print(a, b, c, h.stop_signal == signal.SIGTERM)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split("\n")[0] == "(False, True) (False, False) (True, False) True", (
        result.stderr
    )
    assert "will checkpoint after this step and continue" in result.stderr


@pytest.mark.slow
def test_signal_checkpoints_requeues_and_resumes(tmp_path: Path, tiny_dataset: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.log"
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    scontrol.chmod(0o755)
    env = train_env()
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", SLURM_JOB_ID="4242")

    run = tmp_path / "run"
    args = [
        str(TINY_CONFIG),
        f"data.path={tiny_dataset}",
        f"output_dir={run}",
        "logging.every_steps=1",
    ]
    args += [
        "logging.video_every_steps=0",
        "checkpoint.every_steps=1000",
        "parallel.micro_batch_size=4",
    ]
    log = tmp_path / "stdout.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
             "-m", "training", *args, "max_steps=100000"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:

            def started() -> bool:
                assert proc.poll() is None, f"training exited early:\n{log.read_text()[-3000:]}"
                return "step       3 |" in log.read_text()

            wait_for(started, 300, "training to start")
            workers = {int(p.environ()["RANK"]): p for p in psutil.Process(proc.pid).children()}
            workers[1].send_signal(signal.SIGUSR1)  # only rank 1 is told (Slurm's warning signal)
            time.sleep(0.5)
            workers[0].send_signal(signal.SIGTERM)  # a second signal, likely during the save
            assert proc.wait(timeout=180) == 0, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    stopped = int(re.search(r"stopped by signal after step (\d+)", text).group(1))
    saved = run / "checkpoints" / f"step_{stopped:08d}"
    assert is_complete(saved) and (run / "checkpoints" / "latest").read_text() == saved.name
    assert calls.read_text().split() == ["requeue", "4242"]

    resumed = run_training([*args, f"max_steps={stopped + 2}"], nproc=2)
    assert f"resumed from {saved} at step {stopped}" in resumed.stdout
    assert f"step {stopped + 2:>7d} | loss" in resumed.stdout

    # Requeued onto one process: the global batch (4 x 2 ranks) kept by 2 accumulation steps.
    other_world = run_training([*args, f"max_steps={stopped + 4}"], nproc=1)
    assert "global batch 8 kept as micro-batch 4 x accumulation 2" in other_world.stdout
    assert f"at step {stopped + 2}" in other_world.stdout
    assert f"step {stopped + 4:>7d} | loss" in other_world.stdout
