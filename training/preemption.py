"""Stopping on Slurm's signals: checkpoint, then requeue or exit; and no silent hangs.

Two signals stop training, and they mean different things:
- SIGUSR1: the time limit is near (`--signal=B:USR1@N`, which slurm/lib.sh forwards from the batch
  shell to the tasks). Checkpoint and ask to be requeued: the requeued job resumes.
- SIGTERM: `scancel`, a preemption or `scontrol requeue`, sent by Slurm to every task.
  Checkpoint and exit, and leave the rest to Slurm: a cancelled job stays cancelled, a preempted
  one is requeued by Slurm itself (PreemptMode=REQUEUE). If both arrive, SIGTERM wins.
SIGUSR2 asks for a checkpoint without stopping.

A signal handler only sets a flag, so a signal can never interrupt a checkpoint being written.
The ranks agree on the flags without stalling the GPU: each step starts an all-reduce of this
rank's flags over a gloo (host) group and acts on the one started the step before, so every rank
stops after the same step, one step after the first signal.

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
from dataclasses import dataclass
from multiprocessing import resource_tracker
from pathlib import Path

import torch
import torch.distributed as dist

TIME_LIMIT_SIGNAL = signal.SIGUSR1  # checkpoint, requeue, exit
STOP_SIGNAL = signal.SIGTERM  # checkpoint, exit; Slurm decides what follows
SAVE_SIGNAL = signal.SIGUSR2  # checkpoint now and keep training


@dataclass(frozen=True)
class Agreed:
    """The flags as all ranks agree on them (each true if any rank got the signal)."""

    time_limit: bool = False
    terminate: bool = False
    save: bool = False

    @property
    def stop(self) -> bool:
        return self.time_limit or self.terminate

    @property
    def requeue(self) -> bool:
        """Only the time-limit warning asks for a requeue; a SIGTERM leaves it to Slurm."""
        return self.time_limit and not self.terminate


class PreemptionHandler:
    """Catches the stop signals (and SIGUSR2, save on demand); `poll()` agrees on them over ranks."""

    def __init__(self) -> None:
        self.got: set[int] = set()
        self.save_requested = False
        self._group = dist.new_group(backend="gloo") if dist.is_initialized() else None
        self._pending: tuple[torch.Tensor, dist.Work] | None = None
        start_resource_tracker_deaf()
        for sig in (TIME_LIMIT_SIGNAL, STOP_SIGNAL):
            signal.signal(sig, self._on_stop)
        signal.signal(SAVE_SIGNAL, self._on_save)

    def _on_stop(self, signum: int, _frame: object) -> None:
        # Only set a flag: the loop decides when it is safe to stop (after a step, not mid-save).
        if signum not in self.got:
            self.got.add(signum)
            then = "ask for a requeue" if signum == TIME_LIMIT_SIGNAL else "exit (Slurm decides)"
            _say(f"received {signal.Signals(signum).name}: will checkpoint after a step and {then}")

    def _on_save(self, _signum: int, _frame: object) -> None:
        self.save_requested = True
        _say("received SIGUSR2: will checkpoint after this step and continue")

    def ignore_further_signals(self) -> None:
        """After the stop checkpoint is saved: the process is only exiting now, so a late SIGTERM
        (Slurm's or an operator's) must not kill it during teardown with a failure status."""
        for sig in (TIME_LIMIT_SIGNAL, STOP_SIGNAL):
            signal.signal(sig, signal.SIG_IGN)

    def _flags(self) -> torch.Tensor:
        flags = [TIME_LIMIT_SIGNAL in self.got, STOP_SIGNAL in self.got, self.save_requested]
        self.save_requested = False
        return torch.tensor(flags, dtype=torch.int32)

    def poll(self) -> Agreed:
        """The flags agreed at the previous step; starts the agreement on this step's (a host-side
        collective: every rank calls this once per step)."""
        if self._group is None:  # a single process outside torch.distributed
            return _agreed(self._flags())
        agreed = self._wait()
        flags = self._flags()
        work = dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=self._group, async_op=True)
        self._pending = (flags, work)
        return agreed

    def finish(self, agreed: Agreed) -> Agreed:
        """`agreed` with the last, still pending agreement folded in (call once, at the end)."""
        last = self._wait()
        return Agreed(
            agreed.time_limit or last.time_limit,
            agreed.terminate or last.terminate,
            agreed.save or last.save,
        )

    def _wait(self) -> Agreed:
        if self._pending is None:
            return Agreed()
        flags, work = self._pending
        work.wait()
        self._pending = None
        return _agreed(flags)


def start_resource_tracker_deaf() -> None:
    """Start multiprocessing's resource tracker now, deaf to SIGUSR1 and SIGUSR2.

    The tracker (a child process; streaming's shared memory registers with it) ignores SIGINT
    and SIGTERM but dies of USR1/USR2, and srun signals every process of a task. A dead tracker is
    relaunched empty, and the exit's unregistering then prints a KeyError traceback per shared
    memory block. A signal ignored at exec stays ignored in the new program, so it is started
    with both ignored (no-op if it already runs).
    """
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (TIME_LIMIT_SIGNAL, SAVE_SIGNAL)}
    try:
        resource_tracker.ensure_running()
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _agreed(flags: torch.Tensor) -> Agreed:
    return Agreed(*(bool(v) for v in flags.tolist()))


def _say(message: str) -> None:
    print(f"[rank {os.environ.get('RANK', 0)}] {message}", file=sys.stderr, flush=True)


def requeue() -> bool:
    """Have this job requeued (rank 0 only); False when not running under Slurm.

    Inside slurm/lib.sh's jobs (`PHYWORLD_REQUEUE_FILE` set) it only writes that file: the batch
    shell requeues once every task has exited, so no task is killed in the middle of its exit.
    Elsewhere under Slurm it runs `scontrol requeue $SLURM_JOB_ID` itself.
    """
    request = os.environ.get("PHYWORLD_REQUEUE_FILE")
    job = os.environ.get("SLURM_JOB_ID")
    if request:
        Path(request).write_text(f"{job}\n")
        print(f"asked the batch script to requeue Slurm job {job} ({request})", flush=True)
        return True
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
