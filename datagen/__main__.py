"""`python -m datagen CONFIG.yaml [key=value ...]`: generate a dataset (see docs/datagen.md)."""

from __future__ import annotations

import sys

from datagen.config import DatagenConfig
from datagen.generate import run
from datagen.shards import DatasetError
from phyworld.config import ConfigError, load_config
from phyworld.storage import StorageError


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = load_config(DatagenConfig, sys.argv[1:] if argv is None else argv)
        run(cfg)
    except (ConfigError, StorageError, DatasetError) as err:
        print(f"datagen: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
