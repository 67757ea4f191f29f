"""Record eval results next to a run, and follow a training run to evaluate each checkpoint once.

Everything goes under the run (ARCHITECTURE.md): `RUN/eval/metrics.jsonl` (one line per
(checkpoint, eval set), rewritten atomically, so a crash leaves the previous file), TensorBoard
scalars `eval/SET/METRIC` and side-by-side videos in `RUN/tb` next to the training curves, and
GIFs in `RUN/eval/videos/`.

The watcher lists `RUN/checkpoints/step_*` directories that are complete (training writes the
COMPLETE marker last and renames into place, so a half-written checkpoint is never listed), skips
those already in metrics.jsonl with every configured set (so a restarted watcher picks up where
it stopped), and evaluates the rest oldest first. A checkpoint pruned by training while waiting is
skipped with a warning. A checkpoint that cannot be loaded (corrupt: a file unlike its manifest;
or written by another phyworld version) gets an `[eval] error:` line and is skipped while the
watcher goes on with the others; once it stops, the job fails naming every refused checkpoint,
so a corrupt checkpoint never passes unnoticed nor costs the evaluation of the rest. It stops by
itself once the run's last checkpoint (step = max_steps) is evaluated or refused.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from eval.config import EvalConfig
from eval.evaluate import CheckpointLoadError, evaluate_checkpoint
from phyworld.config import from_yaml
from phyworld.storage import write_bytes
from training.checkpoint import latest
from training.checkpoint_files import COMPLETE, is_complete, verify
from training.config import TrainConfig

METRICS = "metrics.jsonl"


def metrics_path(run_dir: Path) -> Path:
    return Path(run_dir) / "eval" / METRICS


def read_metrics(run_dir: Path) -> list[dict]:
    path = metrics_path(run_dir)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _clean(value):
    """JSON has no NaN: write null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def append_records(run_dir: Path, records: list[dict]) -> None:
    """Add records to metrics.jsonl (replacing older ones of the same checkpoint and set)."""
    new = {(r["checkpoint"], r["set"]) for r in records}
    kept = [r for r in read_metrics(run_dir) if (r["checkpoint"], r["set"]) not in new]
    lines = [json.dumps({k: _clean(v) for k, v in r.items()}) for r in [*kept, *records]]
    path = metrics_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, ("\n".join(lines) + "\n").encode())


def write_tensorboard(run_dir: Path, records: list[dict], clips: dict[str, np.ndarray]) -> None:
    """Scalars eval/SET/METRIC at the checkpoint's step, and the side-by-side videos."""
    import torch
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(Path(run_dir) / "tb"), filename_suffix=".eval")
    for r in records:
        for key, value in r.items():
            if isinstance(value, float) and math.isfinite(value):
                writer.add_scalar(f"eval/{r['set']}/{key}", value, r["step"])
        clip = clips.get(r["set"])
        if clip is not None and len(clip):
            video = torch.from_numpy(np.ascontiguousarray(clip)).permute(
                0, 1, 4, 2, 3
            )  # (N, T, C, H, W)
            writer.add_video(f"eval/{r['set']}/gt_vae_generated", video, r["step"], fps=8)
    writer.close()


def write_gifs(run_dir: Path, checkpoint: str, clips: dict[str, np.ndarray]) -> list[Path]:
    """RUN/eval/videos/CHECKPOINT/SET.gif: the side-by-side clips stacked vertically."""
    from PIL import Image

    out = []
    for name, clip in clips.items():
        if clip is None or not len(clip):
            continue
        frames = np.concatenate(list(clip), axis=1)  # (T, k*H, W, 3)
        path = Path(run_dir) / "eval" / "videos" / checkpoint / f"{name}.gif"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        images = [Image.fromarray(f) for f in frames]
        images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=125, loop=0
        )
        tmp.replace(path)
        out.append(path)
    return out


def evaluate_and_record(ckpt: Path, run_dir: Path, cfg: EvalConfig, nets: dict) -> list[dict]:
    """Evaluate one checkpoint and write every output; returns its records."""
    records, clips = evaluate_checkpoint(ckpt, cfg, nets)
    append_records(run_dir, records)
    write_tensorboard(run_dir, records, clips)
    write_gifs(run_dir, records[0]["checkpoint"], clips)
    for r in records:
        keys = ("vel_error", "vel_error_gt", "fvd", "ssim", "abnormal", "note")
        head = {k: r[k] for k in keys if k in r}
        print(f"[eval] {r['checkpoint']} {r['set']}: {head}", flush=True)
    return records


def pending(run_dir: Path, cfg: EvalConfig) -> list[Path]:
    """Complete checkpoints of the run not yet evaluated on every configured set, oldest first."""
    done: dict[str, set[str]] = {}
    for r in read_metrics(run_dir):
        done.setdefault(r["checkpoint"], set()).add(r["set"])
    wanted = {s.name for s in cfg.sets}
    root = Path(run_dir) / "checkpoints"
    found = sorted(p for p in root.glob("step_*") if p.is_dir()) if root.is_dir() else []
    return [p for p in found if not wanted <= done.get(p.name, set()) and is_complete(p)]


def training_finished(run_dir: Path) -> bool:
    """True when the run's newest complete checkpoint is its last: its step is the `max_steps`
    of the config saved with it (a run resumed later with more steps starts a new watch). A config
    unlike its manifest tells nothing: not finished (the checkpoint is refused with an error)."""
    newest = latest(run_dir)
    if newest is None or verify(newest, ["config.yaml"]):
        return False
    cfg = from_yaml(TrainConfig, (newest / "config.yaml").read_text())
    return int(newest.name.split("_")[1]) >= cfg.max_steps


def watch(run_dir: Path, cfg: EvalConfig, nets: dict) -> int:
    """Evaluate new checkpoints as they appear; returns how many were evaluated.

    Stops once training has written its last checkpoint (`training_finished`) and every
    checkpoint is evaluated, or after `stop_after_s` seconds without a new checkpoint (0: only
    when training has finished). Raises `CheckpointLoadError` at the end if any was refused.
    """
    evaluated, idle_since = 0, time.time()
    # Refused checkpoints: name -> (its COMPLETE, why); skipped until saved again.
    refused: dict[str, tuple[bytes | None, str]] = {}

    def todo() -> list[Path]:
        return [
            p
            for p in pending(run_dir, cfg)
            if p.name not in refused or refused[p.name][0] != _marker(p)
        ]

    print(f"[eval] watching {run_dir}/checkpoints every {cfg.poll_s}s", flush=True)
    while True:
        for ckpt in todo():
            try:
                evaluate_and_record(ckpt, run_dir, cfg, nets)
                evaluated += 1
                refused.pop(ckpt.name, None)
            except CheckpointLoadError as err:
                if not ckpt.exists():
                    warnings.warn(
                        f"checkpoint {ckpt} was removed before it could be evaluated: {err}",
                        stacklevel=1,
                    )
                else:
                    refused[ckpt.name] = (_marker(ckpt), str(err))
                    print(
                        f"[eval] error: {err} (skipped; watching on)", file=sys.stderr, flush=True
                    )
            idle_since = time.time()
        if training_finished(run_dir) and not todo():
            done = "evaluated or refused" if refused else "evaluated"
            print(f"[eval] {run_dir}: training finished, every checkpoint {done}", flush=True)
            break
        if cfg.stop_after_s and time.time() - idle_since > cfg.stop_after_s:
            break
        time.sleep(cfg.poll_s)
    if refused:
        raise CheckpointLoadError(
            f"{len(refused)} checkpoint(s) of {run_dir} could not be evaluated: "
            + "; ".join(why for _, why in refused.values())
        )
    return evaluated


def _marker(ckpt: Path) -> bytes | None:
    """The checkpoint's COMPLETE as it is now: a checkpoint saved again under the same name (after
    training set a corrupt one aside) is a new one to evaluate."""
    try:
        return (ckpt / COMPLETE).read_bytes()
    except OSError:
        return None
