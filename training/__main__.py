"""usage: python -m training CONFIG.yaml [key=value ...]
       torchrun --nproc-per-node N -m training CONFIG.yaml [key=value ...]

Train a video DiT on a datagen dataset (data.path) into a run directory (output_dir) with
DeepSpeed; relaunching into the same output_dir resumes. See docs/training.md and
training/train.py; configs/train/ has one file per model size x scenario of the paper.

A bad config, checkpoint or dataset ends the run with `training: error: ...` (the problem and the
fix, no traceback) and exit status 2. An object store that stays unreachable (`StorageUnavailable`)
ends it with exit status 75 (EX_TEMPFAIL) after asking Slurm to requeue the job, which resumes
from the last checkpoint once the store is back.
"""

import os
import sys

from phyworld.cli import run_cli
from training.config import TrainConfig

STORAGE_UNAVAILABLE = 75  # EX_TEMPFAIL: try again later (the job is requeued)


def train(argv: list[str]) -> int:
    """The command: `training.train.main` (imported here: `--help` needs no DeepSpeed)."""
    from training.data import StorageUnavailable
    from training.preemption import requeue
    from training.train import main

    try:
        main(argv)
    except StorageUnavailable as err:  # on the rank that waited for it, whichever that is
        rank = os.environ.get("RANK", "0")
        print(f"training: error: [rank {rank}] {err}", file=sys.stderr, flush=True)
        requeue()
        return STORAGE_UNAVAILABLE
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m training`: 0 when done, 2 (with a one-line error) on a user error, 75 when the
    object store stayed unreachable (requeued)."""
    return run_cli("training", train, __doc__, TrainConfig, argv)


if __name__ == "__main__":
    sys.exit(main())
