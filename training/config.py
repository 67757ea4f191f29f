"""Every training setting, with its default, in one place.

`python -m training CONFIG.yaml key=value ...` builds a `TrainConfig` from these defaults, the
YAML file and the overrides (see `phyworld.config.load_config`), which checks each Enum and
`bounded` field when the config loads (a wrong value names the allowed ones).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from phyworld.config import bounded


class ModelSize(StrEnum):
    """The keys of training.model.DIT_CONFIGS."""

    micro = "micro"
    tiny = "tiny"
    mini = "mini"
    S = "S"
    B = "B"
    L = "L"
    XL = "XL"


class AdaLN(StrEnum):
    single = "single"
    per_block = "per_block"


class AutoencoderKind(StrEnum):
    pixel = "pixel"
    ours = "ours"
    diffusers = "diffusers"


class TimestepSampling(StrEnum):
    logit_normal = "logit_normal"
    uniform = "uniform"


class Prediction(StrEnum):
    """What the network outputs (training.diffusion)."""

    velocity = "velocity"
    x0 = "x0"


class DataKind(StrEnum):
    videos = "videos"
    latents = "latents"


class Schedule(StrEnum):
    constant = "constant"
    cosine = "cosine"


class ZeroStage(IntEnum):
    """DeepSpeed ZeRO: what is partitioned over the data-parallel ranks."""

    none = 0
    optimizer = 1  # optimizer states
    gradients = 2  # + gradients
    parameters = 3  # + parameters


class Precision(StrEnum):
    auto = "auto"  # bf16 on GPU, fp32 on CPU
    bf16 = "bf16"
    fp32 = "fp32"


class Device(StrEnum):
    auto = "auto"
    cuda = "cuda"
    cpu = "cpu"


# the values, for code outside the configs that checks or loops over them
MODEL_SIZES = tuple(m.value for m in ModelSize)
PREDICTIONS = tuple(p.value for p in Prediction)
TIMESTEP_SAMPLING = tuple(s.value for s in TimestepSampling)


@dataclass
class ModelConfig:
    """The video DiT. `size` picks depth/hidden/heads from `training.model.DIT_CONFIGS`."""

    size: ModelSize = ModelSize.S
    patch_t: int = bounded(1, ge=1)  # patch size along time (latent frames)
    patch_hw: int = bounded(2, ge=1)  # patch size along height and width (latent pixels)
    mlp_ratio: float = bounded(4.0, gt=0)
    rope_theta: float = bounded(10000.0, gt=0)
    # single: one timestep-modulation MLP shared by all blocks plus a learned offset per block
    # (PixArt-alpha; matches the paper's parameter counts); per_block: image DiT's adaLN-Zero.
    adaln: AdaLN = AdaLN.single
    activation_checkpointing: bool = False  # recompute each block in backward to save memory


@dataclass
class VAEConfig:
    """The frozen autoencoder between pixels and latents (never compresses time)."""

    kind: AutoencoderKind = AutoencoderKind.pixel
    # ours: the output_dir of `python -m training.vae`; diffusers: a local AutoencoderKL folder
    # (or a diffusers pipeline folder with vae/)
    path: str = ""
    downsample: int = bounded(4, ge=1)  # spatial factor of the `pixel` kind (pixel-unshuffle)
    # latents = (z - shift) * scaling_factor; 0: the autoencoder's own (pixel 1, ours: saved
    # 1/std of its latents, diffusers: its config's scaling_factor)
    scaling_factor: float = bounded(0.0, ge=0)
    chunk_frames: int = bounded(
        64, ge=1
    )  # frames encoded or decoded at once (bounds activation memory)


@dataclass
class DiffusionConfig:
    """Rectified flow: x_t = (1 - t) x0 + t noise, the model predicts noise - x0."""

    cond_frames: int = bounded(3, ge=1)  # c: 3 for kinematics, 1 for combinatorial scenes
    sample_steps: int = bounded(10, ge=1)  # Euler steps used by eval and the logged videos
    timestep_sampling: TimestepSampling = TimestepSampling.logit_normal
    # what the network outputs (see training.diffusion)
    prediction: Prediction = Prediction.velocity


@dataclass
class DataConfig:
    """Where training samples come from: a datagen dataset (videos) or an encoded one (latents)."""

    path: str = "???"  # local directory or s3://bucket/prefix
    kind: DataKind = DataKind.videos
    frames: int = bounded(
        32, ge=1
    )  # frames per sample used for training (first `frames` of each video)
    resolution: int = bounded(128, ge=1)  # videos are resized to this if stored larger
    num_workers: int = bounded(2, ge=0)
    shuffle: bool = True
    shuffle_seed: int = 0
    cache_dir: str = ""  # local cache for remote datasets; default: a temp dir per run
    # Check the dataset against manifest.json: index and sizes at start, each shard's sha256 when
    # it is downloaded (remote) or first read (local).
    verify_manifest: bool = True
    # Remote datasets: a failed download (connection, timeout, 5xx) is retried with backoff for
    # this long, then the run stops (requeued under Slurm). Keep it well below
    # parallel.collective_timeout_s: the other ranks wait for this one meanwhile.
    download_retry_s: float = bounded(300.0, ge=0)
    download_timeout_s: float = bounded(60.0, gt=0)  # per attempt (streaming's download_timeout)
    # streaming's canonical nodes: the global sample order is laid out over this many nodes,
    # whatever the physical count. 0: the node count of the first launch. Kept in checkpoints, so
    # a resume on other nodes keeps the order (another count divides or is a multiple of it).
    num_canonical_nodes: int = bounded(0, ge=0)


@dataclass
class OptimConfig:
    lr: float = bounded(1e-4, gt=0)
    weight_decay: float = bounded(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = bounded(1e-8, gt=0)
    grad_clip: float = bounded(1.0, ge=0)  # 0: no clipping
    warmup_steps: int = bounded(1000, ge=0)
    schedule: Schedule = Schedule.constant
    min_lr_ratio: float = bounded(0.1, ge=0, le=1)  # cosine ends at lr * min_lr_ratio
    ema_decay: float = bounded(0.9999, ge=0, le=1)


@dataclass
class ParallelConfig:
    zero_stage: ZeroStage = ZeroStage.gradients
    # Ulysses: GPUs that split one sample's tokens (data parallel = world / this). Must divide the
    # heads, the token count and the GPUs per node; ZeRO stage <= 2. See docs/parallel.md.
    sequence_parallel_size: int = bounded(1, ge=1)
    micro_batch_size: int = bounded(8, ge=1)  # per GPU
    grad_accum_steps: int = bounded(1, ge=1)
    # 0: derived; else checked = micro x accum x data-parallel size
    global_batch_size: int = bounded(0, ge=0)
    precision: Precision = Precision.auto
    # auto: CUDA when it works, the CPU (gloo) only when no GPU was requested (CUDA_VISIBLE_DEVICES,
    # SLURM_GPUS*): GPUs asked for but unusable is an error, never a silent CPU run. cpu: on purpose.
    device: Device = Device.auto
    compile: bool = False  # torch.compile each DiT block (CUDA; the first steps compile)
    # a hung collective fails with step and rank named
    collective_timeout_s: int = bounded(600, ge=1)


@dataclass
class CheckpointConfig:
    every_steps: int = bounded(1000, ge=1)
    keep_last: int = bounded(3, ge=1)
    resume: bool = True  # resume automatically from RUN/checkpoints/latest
    # A new run starting from a checkpoint's weights.pt (model + EMA) with a fresh optimizer.
    init_from: str = ""


@dataclass
class LoggingConfig:
    every_steps: int = bounded(10, ge=1)  # stdout step logs and TensorBoard scalars
    # ground truth | generated video in TensorBoard (0: never)
    video_every_steps: int = bounded(1000, ge=0)
    # per-device peak for MFU; 0: guessed from the device name
    peak_tflops: float = bounded(0.0, ge=0)
    sample_ids: bool = False  # RUN/sample_ids.jsonl: the dataset indices of every step's samples


@dataclass
class TrainConfig:
    output_dir: str = "???"
    seed: int = 0
    max_steps: int = bounded(100_000, ge=1)
    model: ModelConfig = field(default_factory=ModelConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
