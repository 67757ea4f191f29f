"""What content hashes cost a checkpoint: saving with the sha256 computed while writing
(`training.checkpoint_files.torch_save`) and verifying a file before loading it, each against the plain
operation it adds to, on the same state dict in the same run.

    python bench/checkpoint.py [--mb 512] [--repeats 3] [--dir /tmp]

Per repeat, in turn: (a) `torch.save` to a path (the baseline: what a checkpoint file cost
before), (b) `torch_save` (hash while writing, one pass), (c) `torch.save` then `sha256_file` (hash
after, a second read: the design not taken). Then (d) `torch.load(weights_only=True)` of the file
(the baseline of a load) and (e) `sha256_file` of it (what verification adds, once per file).
Files stay in the page cache, as right after a save; every save is fsynced, as checkpoints are.
The figures are the fastest repeat, wall clock.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from training.checkpoint_files import sha256_file, torch_load, torch_save


def plain_save(obj: dict, path: Path) -> None:
    torch.save(obj, path)
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=512, help="state dict size in MiB")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where to write")
    args = parser.parse_args()

    # An optimizer-shard-like state dict: a few large fp32 tensors and many small ones.
    numel = args.mb * 2**20 // 4
    state = {f"big.{i}": torch.randn(numel // 8) for i in range(7)}
    state.update({f"small.{i}": torch.randn(numel // 8 // 512) for i in range(512)})
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "shard.pt"
        save = best(lambda: plain_save(state, path), args.repeats)
        hashed = best(lambda: torch_save(state, path), args.repeats)
        after = best(lambda: (plain_save(state, path), sha256_file(path)), args.repeats)
        assert torch_save(state, path) == sha256_file(path)
        size = path.stat().st_size / 2**30
        load = best(lambda: torch_load(path), args.repeats)
        verify = best(lambda: sha256_file(path), args.repeats)

    data = os.urandom(256 * 2**20)
    start = time.perf_counter()
    hashlib.sha256(data).digest()
    rate = 0.25 / (time.perf_counter() - start)
    print(f"state dict {size:.2f} GiB, sha256 alone {rate:.2f} GiB/s on this CPU")
    print(f"save  torch.save (baseline)           {save:7.2f} s  x1.00")
    print(f"save  torch_save, hashed while writing {hashed:7.2f} s  x{hashed / save:.2f}")
    print(f"save  torch.save + sha256 re-read     {after:7.2f} s  x{after / save:.2f}")
    print(f"load  torch.load (baseline)           {load:7.2f} s  x1.00")
    print(
        f"load  + verify (sha256 of the file)   {load + verify:7.2f} s  x{(load + verify) / load:.2f}"
    )


if __name__ == "__main__":
    main()
