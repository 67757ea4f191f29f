"""Preemption and time limits on Slurm: checkpoint, requeue, exit; and no silent hangs.

Slurm warns a job before killing it: `--signal=B:USR1@N` (time limit, sent to the batch script,
which forwards it to the tasks) or SIGTERM (preemption, sent to every task). A signal handler only
sets a flag, so a signal can never interrupt a checkpoint being written (a second signal during
the save changes nothing). SIGUSR2 asks for a checkpoint without stopping. At each step boundary the ranks agree on the flag with one all-reduce,
so they all stop after the same step, save, and rank 0 asks Slurm to requeue the job; the restarted
job resumes from that checkpoint automatically (training.checkpoint.latest).

`StepWatchdog` turns a hung collective into an error that names the rank and the step.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import subprocess
import sys
import threading
import time

import torch
import torch.distributed as dist

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)
SAVE_SIGNAL = signal.SIGUSR2  # checkpoint now and keep training


class PreemptionHandler:
    """Catches the stop signals (and SIGUSR2, save on demand); `poll()` agrees on them over ranks."""

    def __init__(self) -> None:
        self.stop_signal: int | None = None
        self.save_requested = False
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_stop)
        signal.signal(SAVE_SIGNAL, self._on_save)

    def _on_stop(self, signum: int, _frame: object) -> None:
        # Only set a flag: the loop decides when it is safe to stop (after a step, not mid-save).
        if self.stop_signal is None:
            self.stop_signal = signum
            _say(
                f"received {signal.Signals(signum).name}: will checkpoint and stop after this step"
            )

    def _on_save(self, _signum: int, _frame: object) -> None:
        self.save_requested = True
        _say("received SIGUSR2: will checkpoint after this step and continue")

    def ignore_further_signals(self) -> None:
        """After the stop checkpoint is saved: the process is only exiting now, so a late SIGTERM
        (Slurm's or an operator's) must not kill it during teardown with a failure status."""
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)

    def poll(self) -> tuple[bool, bool]:
        """(stop, save) as agreed by all ranks: true if any rank got the signal (a collective)."""
        flags = torch.tensor([self.stop_signal is not None, self.save_requested], dtype=torch.int32)
        if dist.is_initialized():
            device = "cuda" if dist.get_backend() == "nccl" else "cpu"
            flags = flags.to(device)
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        self.save_requested = False
        return bool(flags[0].item()), bool(flags[1].item())


def _say(message: str) -> None:
    print(f"[rank {os.environ.get('RANK', 0)}] {message}", file=sys.stderr, flush=True)


def requeue() -> bool:
    """Ask Slurm to requeue this job (rank 0 only); False when not running under Slurm."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return False
    result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if "pending execution" in result.stderr:
        # Someone (an admin, a preemption) requeued the job first: it will come back all the same.
        print(f"Slurm job {job} is already requeued", flush=True)
        return True
    if result.returncode != 0:
        print(
            f"scontrol requeue {job} failed ({result.stderr.strip()}); the job is not requeued: "
            "check that the partition allows requeue (sbatch --requeue)",
            file=sys.stderr,
            flush=True,
        )
        return False
    print(f"requeued Slurm job {job}", flush=True)
    return True


class StepWatchdog:
    """Kills the process with a clear message when a step makes no progress for `timeout_s`.

    A hung collective (a rank died, a network partition) otherwise blocks forever. The watchdog
    thread prints which rank is stuck in which step, dumps every thread's stack, and exits, so
    the launcher (torchrun/srun) tears the job down and Slurm can requeue it.
    """

    def __init__(self, timeout_s: float, rank: int) -> None:
        self.timeout_s = timeout_s
        self.rank = rank
        self.step = 0
        self.phase = ""
        self.last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="step-watchdog")

    def beat(self, step: int, phase: str = "train step") -> None:
        """Record progress: the loop calls this at each step boundary (the first call arms it).

        Start-up (loading a large checkpoint, downloading an index) is not watched: its
        collectives are bounded by the process group's own timeout.
        """
        self.step, self.phase, self.last = step, phase, time.monotonic()
        if self.timeout_s > 0 and not self._thread.is_alive():
            self._thread.start()

    def close(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(min(10.0, self.timeout_s / 4)):
            stalled = time.monotonic() - self.last
            if stalled > self.timeout_s:
                print(
                    f"[rank {self.rank}] no progress for {stalled:.0f} s in {self.phase} at step "
                    f"{self.step} (parallel.collective_timeout_s={self.timeout_s:g}): a collective is "
                    "probably hung (another rank died or the network is down). Stacks follow.",
                    file=sys.stderr,
                    flush=True,
                )
                faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
                os._exit(3)
