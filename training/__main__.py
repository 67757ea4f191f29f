"""`python -m training CONFIG.yaml [key=value ...]`: see training/train.py.

A bad config, checkpoint or dataset ends the run with `training: error: ...` (the problem and the
fix, no traceback) and exit status 2.
"""

import os
import sys

from phyworld.config import ConfigError
from training.checkpoint import CheckpointError
from training.data import DataError
from training.distributed import DeviceError
from training.engine import EngineConfigError
from training.parallel.groups import ParallelError
from training.train import main
from training.vae import AutoencoderError

USER_ERRORS = (
    ConfigError,
    CheckpointError,
    DataError,
    DeviceError,
    EngineConfigError,
    ParallelError,
    AutoencoderError,
)

if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except USER_ERRORS as err:
        if os.environ.get("RANK", "0") == "0":
            print(f"training: error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
