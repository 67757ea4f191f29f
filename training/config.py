"""Every training setting, with its default, in one place.

`python -m training CONFIG.yaml key=value ...` builds a `TrainConfig` from these defaults, the
YAML file and the overrides (see `phyworld.config.load_config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ModelConfig:
    """The video DiT. `size` picks depth/hidden/heads from `training.model.DIT_CONFIGS`."""

    size: str = "S"  # tiny | S | B | L | XL
    patch_t: int = 1  # patch size along time (latent frames)
    patch_hw: int = 2  # patch size along height and width (latent pixels)
    mlp_ratio: float = 4.0
    rope_theta: float = 10000.0
    # single: one timestep-modulation MLP shared by all blocks plus a learned offset per block
    # (PixArt-alpha; matches the paper's parameter counts); per_block: image DiT's adaLN-Zero.
    adaln: str = "single"
    activation_checkpointing: bool = False  # recompute each block in backward to save memory


@dataclass
class VAEConfig:
    """The frozen autoencoder between pixels and latents (never compresses time)."""

    kind: str = "pixel"  # pixel | ours | diffusers
    # ours: the output_dir of `python -m training.vae`; diffusers: a local AutoencoderKL folder
    # (or a diffusers pipeline folder with vae/)
    path: str = ""
    downsample: int = 4  # spatial factor of the `pixel` kind (pixel-unshuffle)
    # latents = (z - shift) * scaling_factor; 0: the autoencoder's own (pixel 1, ours: saved
    # 1/std of its latents, diffusers: its config's scaling_factor)
    scaling_factor: float = 0.0
    chunk_frames: int = 64  # frames encoded or decoded at once (bounds activation memory)


@dataclass
class DiffusionConfig:
    """Rectified flow: x_t = (1 - t) x0 + t noise, the model predicts noise - x0."""

    cond_frames: int = 3  # c: 3 for kinematics, 1 for combinatorial scenes
    sample_steps: int = 10  # Euler steps used by eval and the logged videos
    timestep_sampling: str = "logit_normal"  # logit_normal | uniform
    prediction: str = "velocity"  # what the network outputs: velocity | x0 (see training.diffusion)


@dataclass
class DataConfig:
    """Where training samples come from: a datagen dataset (videos) or an encoded one (latents)."""

    path: str = "???"  # local directory or s3://bucket/prefix
    kind: str = "videos"  # videos | latents
    frames: int = 32  # frames per sample used for training (first `frames` of each video)
    resolution: int = 128  # videos are resized to this if stored larger
    num_workers: int = 2
    shuffle: bool = True
    shuffle_seed: int = 0
    cache_dir: str = ""  # local cache for remote datasets; default: a temp dir per run
    verify_manifest: bool = True
    # streaming's canonical nodes: the global sample order is laid out over this many nodes,
    # whatever the physical count. 0: the node count of the first launch. Kept in checkpoints, so
    # a resume on other nodes keeps the order (another count divides or is a multiple of it).
    num_canonical_nodes: int = 0


@dataclass
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float = 1.0
    warmup_steps: int = 1000
    schedule: str = "constant"  # constant | cosine
    min_lr_ratio: float = 0.1  # cosine ends at lr * min_lr_ratio
    ema_decay: float = 0.9999


@dataclass
class ParallelConfig:
    zero_stage: int = 2  # 0 | 1 | 2 | 3
    # Ulysses: GPUs that split one sample's tokens (data parallel = world / this). Must divide the
    # heads, the token count and the GPUs per node; ZeRO stage <= 2. See docs/parallel.md.
    sequence_parallel_size: int = 1
    micro_batch_size: int = 8  # per GPU
    grad_accum_steps: int = 1
    global_batch_size: int = 0  # 0: derived; else checked = micro x accum x data-parallel size
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | bf16 | fp32
    collective_timeout_s: int = 600  # a hung collective fails with step and rank named


@dataclass
class CheckpointConfig:
    every_steps: int = 1000
    keep_last: int = 3
    resume: bool = True  # resume automatically from RUN/checkpoints/latest
    # A new run starting from a checkpoint's weights.pt (model + EMA) with a fresh optimizer.
    init_from: str = ""


@dataclass
class LoggingConfig:
    every_steps: int = 10  # stdout step logs and TensorBoard scalars
    video_every_steps: int = 1000  # ground truth | generated video in TensorBoard (0: never)
    peak_tflops: float = 0.0  # per-device peak for MFU; 0: guessed from the device name
    sample_ids: bool = False  # RUN/sample_ids.jsonl: the dataset indices of every step's samples


@dataclass
class TrainConfig:
    output_dir: str = "???"
    seed: int = 0
    max_steps: int = 100_000
    model: ModelConfig = field(default_factory=ModelConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
