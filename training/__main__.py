"""`python -m training CONFIG.yaml [key=value ...]`: see training/train.py.

A bad config, checkpoint or dataset ends the run with `training: error: ...` (the problem and the
fix, no traceback) and exit status 2. An object store that stays unreachable (`StorageUnavailable`)
ends it with exit status 75 (EX_TEMPFAIL) after asking Slurm to requeue the job, which resumes
from the last checkpoint once the store is back.
"""

import multiprocessing
import os
import signal
import sys

from phyworld.config import ConfigError
from training.checkpoint import CheckpointError
from training.data import DataError, StorageUnavailable
from training.distributed import DeviceError
from training.engine import EngineConfigError
from training.parallel.groups import ParallelError
from training.preemption import requeue
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
    except StorageUnavailable as err:  # on the rank that waited for it, whichever that is
        rank = os.environ.get("RANK", "0")
        print(f"training: error: [rank {rank}] {err}", file=sys.stderr, flush=True)
        requeue()
        sys.exit(75)
    except USER_ERRORS as err:
        if os.environ.get("RANK", "0") == "0":
            print(f"training: error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    finally:
        # Loader workers ignore SIGTERM (a preemption's is for the trainer, which still needs
        # them), so a run ending on an error would wait for them at exit until the watchdog.
        # Without torch's SIGCHLD handler, which would report their end as a crash.
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for child in multiprocessing.active_children():
            child.kill()
            child.join()
