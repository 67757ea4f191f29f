"""Evaluate one checkpoint on the configured eval sets: generate, parse, score, record.

For each set the checkpoint continues every video from its first c frames (batched, fixed seed).
Kinematic sets: both parsers on the generated videos (`model`), on the ground truth (`gt`, the
parser's noise floor) and on VAE reconstructions (`vae`, the autoencoder's floor).
Combinatorial sets: FVD, SSIM, PSNR, LPIPS against the ground truth and the abnormal ratio of the
generated videos (and of the ground truth, which must be 0).

Each (checkpoint, set) gives one record: a flat dict of means (`vel_error` is the model error of
the primary parser in the configured `metric`, `step` or `paper`; every other number is
`METRIC.PARSER.SOURCE`, e.g. `vel_error.alpha.gt`, `vel_error_paper.threshold.model`; a set
pooled from several levels also has the headline numbers per level, `vel_error@LEVEL`; a null
`vel_error` comes with a `note` saying why). Side-by-side videos (ground truth | VAE | generated,
each panel named above it) go to `RUN/eval/videos/` as GIFs and to TensorBoard.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from eval import abnormal, fvd, video_metrics
from eval.config import EvalConfig, EvalSetConfig
from eval.parse import PARSERS, parse_balls
from eval.samples import (
    EvalSetError,
    check_condition_in_view,
    iter_batches,
    kinematic_truth,
    stack_frames,
)
from eval.velocity import paper_velocity_errors, velocity_errors
from phyworld.cli import UserError
from phyworld.data.pixels import to_uint8, to_unit
from phyworld.data.runs import checkpoint_step


class CheckpointLoadError(UserError, RuntimeError):
    """A checkpoint eval cannot load; the message says why and what to do."""


def pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def load_checkpoint(path: Path, cfg: EvalConfig):
    """`training.inference.load_generator`, with its failures turned into clear errors."""
    from phyworld.config import ConfigError
    from training.checkpoint import CheckpointError
    from training.inference import load_generator

    try:
        return load_generator(path, ema=cfg.ema, device=pick_device(cfg.device))
    except ConfigError as err:
        raise CheckpointLoadError(
            f"checkpoint {path} was written with a config this code does not know ({err}); "
            "evaluate it with the phyworld version that trained it"
        ) from None
    except CheckpointError as err:  # its message names the checkpoint, the file and the fix
        raise CheckpointLoadError(str(err)) from None
    except FileNotFoundError as err:
        raise CheckpointLoadError(f"cannot load checkpoint {path}: {err}") from None


@torch.no_grad()
def reconstruct(gen, frames: np.ndarray) -> np.ndarray:
    """VAE round trip of uint8 videos (B, T, H, W, 3) at the model's resolution."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).to(gen.device)
    video = to_unit(video.permute(0, 4, 1, 2, 3))  # (B, 3, T, H, W)
    video = resize(video, gen.resolution)
    out = gen.autoencoder.decode(gen.autoencoder.encode(video))
    return to_uint8(out).permute(0, 2, 3, 4, 1).cpu().numpy()


def resize(video: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, C, T, size, size), area-averaged (a no-op at the same size)."""
    b, c, t, h, w = video.shape
    if (h, w) == (size, size):
        return video
    flat = F.interpolate(
        video.transpose(1, 2).reshape(b * t, c, h, w), size=(size, size), mode="area"
    )
    return flat.reshape(b, t, c, size, size).transpose(1, 2)


def resize_uint8(frames: np.ndarray, size: int) -> np.ndarray:
    if frames.shape[2] == size:
        return frames
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 4, 1, 2, 3).float()
    return resize(x, size).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 4, 1).numpy()


def _mean(values: list[np.ndarray]) -> float:
    v = np.concatenate(values) if values else np.array([])
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def score_kinematic(
    gen, name: str, set_cfg: EvalSetConfig, cfg: EvalConfig
) -> tuple[dict, np.ndarray]:
    """Velocity errors of a kinematic set: both parsers x both metrics x (model, gt, vae)."""
    cond = gen.config.diffusion.cond_frames
    per: dict[str, list[np.ndarray]] = defaultdict(list)
    levels: list[str] = []
    side_by_side, scenario = None, ""
    batches = iter_batches(set_cfg.path, cfg.batch_size, set_cfg.max_videos)
    for i, batch in enumerate(tqdm(batches, desc=f"eval {name}", unit="batch")):
        truth = kinematic_truth(batch, name)
        check_condition_in_view(truth, batch, name, cond)
        levels += [s["level"] for s in batch]
        scenario = truth.scenario
        gt = stack_frames(batch)
        videos = {
            "gt": gt,
            "model": gen.generate(gt, cond, cfg.sample_steps or None, seed=cfg.seed + i),
        }
        if cfg.floors:
            videos["vae"] = reconstruct(gen, gt)
        for source, frames in videos.items():
            if source == "gt" and not cfg.floors:
                continue
            for method in PARSERS:
                parsed = parse_balls(
                    frames,
                    truth.world_size,
                    method=method,
                    colours=truth.colours,
                    threshold=cfg.parser.threshold,
                    alpha_floor=cfg.parser.alpha_floor,
                )
                states = (parsed, truth.position, truth.velocity, truth.radius)
                kw = dict(
                    world_size=truth.world_size,
                    frame_dt=truth.frame_dt,
                    cond_frames=cond,
                    scenario=truth.scenario,
                )
                errors = velocity_errors(*states, **kw)
                errors["vel_error_paper"] = paper_velocity_errors(*states, **kw)
                for metric, values in errors.items():
                    per[f"{metric}.{method}.{source}"].append(values)
        if side_by_side is None:
            side_by_side = _side_by_side(videos, cfg.num_side_by_side, gen.resolution)
    if not levels:
        raise EvalSetError(f"eval set '{name}' at {set_cfg.path} holds no videos")
    record = kinematic_record(per, cfg, scenario, levels)
    if "note" in record:
        print(f"[eval] {name}: vel_error is null: {record['note']}", flush=True)
    return record, side_by_side


def kinematic_record(
    per: dict[str, list[np.ndarray]], cfg: EvalConfig, scenario: str, levels: list[str] = ()
) -> dict:
    """The record of a kinematic set from its per-video metrics (`METRIC.PARSER.SOURCE` ->
    arrays, videos in `levels` order): means, the headline numbers (per level too when the set
    pools several), and a `note` when there is no velocity error to report."""
    per_video = {key: np.concatenate(v) for key, v in per.items()}
    record: dict[str, Any] = _headline(per_video, cfg)
    record.update({key: _mean([v]) for key, v in sorted(per_video.items())})
    pooled = sorted(set(levels))
    if len(pooled) > 1:  # a pooled set (datagen groups): the headline numbers per level too
        of_level = np.array(levels)
        for level in pooled:
            sub = {key: v[of_level == level] for key, v in per_video.items()}
            for key, value in _headline(sub, cfg).items():
                record[f"{key}@{level}"] = value
            record[f"n@{level}"] = int((of_level == level).sum())
    record.update(
        n=len(levels),
        level="pooled" if len(pooled) > 1 else "".join(pooled),
        scenario=scenario,
        parser=cfg.parser.primary,
        metric=cfg.metric,
    )
    if not np.isfinite(record["vel_error"]):
        record["note"] = _no_velocity_note(record, cfg.parser.primary, scenario)
    return record


def _no_velocity_note(record: dict, parser: str, scenario: str) -> str:
    """Why a kinematic set has no velocity error, in words (metrics.jsonl writes NaN as null)."""
    missing = record.get(f"missing.{parser}.model", float("nan"))
    if np.isfinite(missing):
        return (
            f"the {parser} parser found no ball in the generated videos (missing "
            f"{missing:.0%} of scored steps): look at the side-by-side videos"
        )
    after = " after the collision" if scenario == "collision" else ""
    return f"no step was scored: no ball stays fully in view after the condition frames{after}"


def _headline(per_video: dict[str, np.ndarray], cfg: EvalConfig) -> dict[str, float]:
    """`vel_error` (and `_gt`, `_vae`): the configured metric of the primary parser."""
    key = {"step": "vel_error", "paper": "vel_error_paper"}[cfg.metric]
    primary = cfg.parser.primary
    out = {"vel_error": _mean([per_video[f"{key}.{primary}.model"]])}
    if cfg.floors:
        out["vel_error_gt"] = _mean([per_video[f"{key}.{primary}.gt"]])
        out["vel_error_vae"] = _mean([per_video[f"{key}.{primary}.vae"]])
    return out


def score_combinatorial(
    gen, name: str, set_cfg: EvalSetConfig, cfg: EvalConfig, nets: dict
) -> tuple[dict, np.ndarray]:
    """FVD / SSIM / PSNR / LPIPS against the ground truth and the abnormal ratio."""
    cond = gen.config.diffusion.cond_frames
    per: dict[str, list[np.ndarray]] = defaultdict(list)
    feats: dict[str, list[np.ndarray]] = defaultdict(list)
    flags: dict[str, list[dict]] = defaultdict(list)
    side_by_side, n, level = None, 0, ""
    device = pick_device(cfg.device)
    batches = iter_batches(set_cfg.path, cfg.batch_size, set_cfg.max_videos)
    for i, batch in enumerate(tqdm(batches, desc=f"eval {name}", unit="batch")):
        level = batch[0]["level"]
        original = stack_frames(batch)  # the eval set's resolution
        gt = resize_uint8(original, gen.resolution)  # the model's
        fake = gen.generate(gt, cond, cfg.sample_steps or None, seed=cfg.seed + i)
        per["ssim"].append(video_metrics.ssim(fake, gt, start=cond))
        per["psnr"].append(video_metrics.psnr(fake, gt, start=cond))
        per["lpips"].append(video_metrics.lpips(nets["lpips"], fake, gt, start=cond))
        if n < cfg.fvd.num_videos:
            take = cfg.fvd.num_videos - n
            feats["gt"].append(fvd.i3d_features(nets["i3d"], gt[:take], cfg.fvd.batch_size, device))
            feats["model"].append(
                fvd.i3d_features(nets["i3d"], fake[:take], cfg.fvd.batch_size, device)
            )
        for sample, g_frames, f_frames in zip(batch, original, fake):
            # The ground truth is judged at its own resolution (the detector's thresholds are
            # set for hard-edged frames of >= 128 px), the generated videos at the model's.
            palette = abnormal.Palette.from_objects(sample["objects"])
            p = sample["params"]
            g = cfg.abnormal.gravity / p["world_size"] * p["frame_dt"] ** 2  # per pixel of width
            flags["model"].append(
                abnormal.detect(f_frames, palette, cfg.abnormal, g * f_frames.shape[2], start=cond)
            )
            if cfg.floors:
                flags["gt"].append(
                    abnormal.detect(
                        g_frames, palette, cfg.abnormal, g * g_frames.shape[2], start=cond
                    )
                )
        if side_by_side is None:
            videos = {"gt": gt, "model": fake}
            if cfg.floors:
                videos["vae"] = reconstruct(gen, gt)
            side_by_side = _side_by_side(videos, cfg.num_side_by_side, gen.resolution)
        n += len(batch)
    if n == 0:
        raise EvalSetError(f"eval set '{name}' at {set_cfg.path} holds no videos")
    record: dict[str, Any] = {key: _mean(v) for key, v in per.items()}
    real, gen_feats = np.concatenate(feats["gt"]), np.concatenate(feats["model"])
    record["fvd"] = fvd.fvd_from_features(real, gen_feats) if len(real) > 1 else float("nan")
    record["fvd_n"] = len(real)
    for source, f in flags.items():
        for key, value in abnormal.abnormal_ratio(f).items():
            record[key if source == "model" else f"{key}.{source}"] = value
    record.update(n=n, level=level, scenario="phyre")
    return record, side_by_side


# The panels of the side-by-side videos, left to right: (source, label, label when narrow).
PANELS = (("gt", "ground truth", "GT"), ("vae", "VAE", "VAE"), ("model", "generated", "gen"))
LABEL_PX = 12  # height of the white strip above each panel that names it


def _side_by_side(videos: dict[str, np.ndarray], keep: int, size: int) -> np.ndarray:
    """(k, T, LABEL_PX + R, 3R or 2R, 3) uint8: ground truth | VAE | generated, side by side,
    each panel named in a strip above it."""
    parts = [
        _labelled(resize_uint8(videos[source][:keep], size), label, short)
        for source, label, short in PANELS
        if source in videos
    ]
    return np.concatenate(parts, axis=3)


def _labelled(clip: np.ndarray, label: str, short: str) -> np.ndarray:
    """(k, T, H, W, 3) -> (k, T, LABEL_PX + H, W, 3): `label` (or `short` if it does not fit)
    in black on a white strip on top."""
    from PIL import Image, ImageDraw

    k, t, _, w, _ = clip.shape
    strip = Image.new("RGB", (w, LABEL_PX), "white")
    draw = ImageDraw.Draw(strip)
    text = label if draw.textlength(label) <= w - 2 else short
    draw.text((1, 0), text, fill="black")
    header = np.broadcast_to(np.asarray(strip), (k, t, LABEL_PX, w, 3))
    return np.concatenate([header, clip], axis=2)


def load_nets(cfg: EvalConfig) -> dict:
    """The feature networks of the combinatorial metrics (only when a combinatorial set is configured)."""
    if not any(s.kind == "combinatorial" for s in cfg.sets):
        return {}
    device = pick_device(cfg.device)
    i3d = fvd.load_i3d(cfg.fvd.weights, cfg.fvd.sha256, cfg.fvd.url, cfg.fvd.cache_dir).to(device)
    lp = video_metrics.load_lpips(cfg.lpips.weights, cfg.lpips.sha256).to(device)
    return {"i3d": i3d, "lpips": lp}


def evaluate_checkpoint(
    path: Path, cfg: EvalConfig, nets: dict
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Records (one per eval set) and side-by-side videos of one checkpoint."""
    if not cfg.sets:
        raise EvalSetError(
            "no eval sets configured: add `sets:` to the eval YAML (see configs/eval/)"
        )
    gen = load_checkpoint(path, cfg)
    step = checkpoint_step(gen.checkpoint)
    records, clips = [], {}
    for set_cfg in cfg.sets:
        name = set_cfg.name
        start = time.time()
        if set_cfg.kind == "kinematic":
            record, clip = score_kinematic(gen, name, set_cfg, cfg)
        elif set_cfg.kind == "combinatorial":
            record, clip = score_combinatorial(gen, name, set_cfg, cfg, nets)
        else:
            raise EvalSetError(
                f"eval set '{name}': kind must be kinematic or combinatorial, got '{set_cfg.kind}'"
            )
        record = {
            "checkpoint": gen.checkpoint.name,
            "step": step,
            "set": name,
            "kind": set_cfg.kind,
            "model_size": gen.config.model.size,
            "ema": cfg.ema,
            "seconds": round(time.time() - start, 2),
            **record,
        }
        records.append(record)
        clips[name] = clip
    return records, clips
