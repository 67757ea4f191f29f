"""Stop signals: the time-limit warning (USR1) on one rank stops all ranks after the same step
with a checkpoint and asks Slurm to requeue, and the next launch resumes, also on another world
size; SIGTERM stops without a requeue; a second signal during the save is harmless; a hung step is
reported with rank and step. (On a real Slurm: tests/slurm.)"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp
from harness import REPO, TINY_CONFIG, free_port, run_training, train_env

from phyworld.data.runs import LATEST, step_dir
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
        "os.kill(os.getpid(), signal.SIGUSR1); c = h.poll()\n"
        "os.kill(os.getpid(), signal.SIGTERM); d = h.poll()\n"
        "print(a.save, b.save, c.stop, c.requeue, d.stop, d.requeue)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    # USR2: save once; USR1 (time limit): stop and requeue; then TERM too: stop, Slurm decides.
    assert result.stdout.split("\n")[0] == "True False True True True False", result.stderr
    assert "will checkpoint after this step and continue" in result.stderr
    assert "SIGTERM: will checkpoint after a step and exit (Slurm decides)" in result.stderr


def test_resource_tracker_survives_the_job_signals() -> None:
    """srun signals every process of a task; multiprocessing's resource tracker (streaming's
    shared memory) must outlive USR1/USR2/TERM, or each exit prints KeyError tracebacks."""
    code = (
        "import os, signal, time\nfrom multiprocessing import resource_tracker\n"
        "from training.preemption import PreemptionHandler\n"
        "h = PreemptionHandler()\nresource_tracker.ensure_running()\n"
        "pid = resource_tracker._resource_tracker._pid\n"
        "for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM):\n    os.kill(pid, sig)\n"
        "time.sleep(1)\nprint('alive' if os.waitpid(pid, os.WNOHANG) == (0, 0) else 'dead')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "alive", result.stderr


def _agree(rank: int, world: int, port: int, out: str) -> None:
    """Rank 1 gets USR1 before step 3's poll, rank 0 TERM before step 6's: what each rank sees."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from training.preemption import PreemptionHandler

    handler, seen = PreemptionHandler(), []
    for step in range(1, 9):
        if (rank, step) == (1, 3):
            os.kill(os.getpid(), signal.SIGUSR1)
        if (rank, step) == (0, 6):
            os.kill(os.getpid(), signal.SIGTERM)
        agreed = handler.poll()
        seen.append((step, agreed.stop, agreed.requeue))
    final = handler.finish(agreed)
    seen.append(("finish", final.stop, final.requeue))
    Path(out, f"rank{rank}.json").write_text(json.dumps(seen))
    dist.destroy_process_group()


def test_ranks_agree_on_the_step_after_the_signal(tmp_path: Path) -> None:
    """The agreement is asynchronous (no host sync of the GPU): every rank sees the same flags at
    the same step, one step after the signal; a SIGTERM anywhere cancels the requeue."""
    mp.spawn(_agree, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert seen[0] == seen[1]
    flags = {step: (stop, requeue) for step, stop, requeue in seen[0]}
    assert [s for s in range(1, 9) if flags[s][0]] == [4, 5, 6, 7, 8]
    assert flags[4] == (True, True) and flags[7] == (True, False)
    assert flags["finish"] == (True, False)


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
            workers[0].send_signal(signal.SIGUSR1)  # a second signal, likely during the save
            assert proc.wait(timeout=180) == 0, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    stopped = int(re.search(r"stopped by signal after step (\d+)", text).group(1))
    saved = step_dir(run, stopped)
    assert is_complete(saved) and (saved.parent / LATEST).read_text() == saved.name
    assert calls.read_text().split() == ["requeue", "4242"]

    resumed = run_training([*args, f"max_steps={stopped + 2}"], nproc=2)
    assert f"resumed from {saved} at step {stopped}" in resumed.stdout
    assert f"step {stopped + 2:>7d} | loss" in resumed.stdout

    # Requeued onto one process: the global batch (4 x 2 ranks) kept by 2 accumulation steps.
    other_world = run_training([*args, f"max_steps={stopped + 4}"], nproc=1)
    assert "global batch 8 kept as micro-batch 4 x accumulation 2" in other_world.stdout
    assert f"at step {stopped + 2}" in other_world.stdout
    assert f"step {stopped + 4:>7d} | loss" in other_world.stdout
