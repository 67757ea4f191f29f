"""usage: python -m training CONFIG.yaml [key=value ...]
       torchrun --nproc-per-node N -m training CONFIG.yaml [key=value ...]

Train a video DiT on a datagen dataset (data.path) into a run directory (output_dir) with
DeepSpeed; relaunching into the same output_dir resumes. See docs/training.md and
training/train.py; configs/train/ has one file per model size x scenario of the paper.

A bad config, checkpoint or dataset ends the run with `training: error: ...` (the problem and the
fix, no traceback) and exit status 2.
"""

import sys

from phyworld.cli import run_cli
from training.config import TrainConfig


def train(argv: list[str]) -> None:
    """The command: `training.train.main` (imported here: `--help` needs no DeepSpeed)."""
    from training.train import main

    main(argv)


def main(argv: list[str] | None = None) -> int:
    """`python -m training`: 0 when done, 2 (with a one-line error) on a user error."""
    return run_cli("training", train, __doc__, TrainConfig, argv)


if __name__ == "__main__":
    sys.exit(main())
