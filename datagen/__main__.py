"""usage: python -m datagen CONFIG.yaml [key=value ...]

Generate a dataset: simulate, render and write MDS shards with their manifest to `output` (a
local directory or s3://bucket/prefix). See docs/datagen.md; configs/data/ has one file per
dataset of the paper.
"""

from __future__ import annotations

import sys

from datagen.config import DatagenConfig
from phyworld.cli import run_cli
from phyworld.config import load_config


def generate(argv: list[str]) -> None:
    """The command: load the config, then generate (and merge) the dataset."""
    from datagen.generate import run

    run(load_config(DatagenConfig, argv))


def main(argv: list[str] | None = None) -> int:
    """`python -m datagen`: 0 when done, 2 (with a one-line error) on a user error."""
    return run_cli("datagen", generate, __doc__, DatagenConfig, argv)


if __name__ == "__main__":
    sys.exit(main())
