"""The video DiT: a diffusion transformer over spatio-temporal latent patches.

Reads top to bottom: rotary position embedding (3D RoPE), timestep embedder, attention, the block
(adaLN modulation), the final layer, the model, then the size table.

Conditioning, as in the paper: the first c latent frames, zero-padded to full length, and a binary
mask channel (1 on condition frames) are concatenated with the noisy latent on channels, so the
input has `2 * C + 1` channels and the output `C`.

Timestep conditioning is adaLN-Zero. By default the modulation MLP is shared by all blocks and
each block adds its own learned (6, D) offset (PixArt-alpha's "adaLN-single"): this is what the
paper's parameter counts (DiT-S 22.5M ... XL 456M) correspond to; per-block modulation MLPs
(`adaln="per_block"`, image DiT's choice) add 6 D^2 per block (DiT-XL: 675M). Either way the
modulation is zero-initialised, so every block starts as the identity.

Seams for sequence parallelism (`training.parallel.sequence`): `forward` is `embed` -> `backbone`
-> `unpatchify`; `backbone` is token-wise except inside attention, and takes the tokens' explicit
(t, h, w) positions, so a wrapper can shard tokens and positions after `embed` and gather before
`unpatchify`. Inside attention the core is `Attention.attend` (a parameter-free module calling
`scaled_dot_product_attention`), which a wrapper can replace with an all-to-all version.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from training.config import ModelConfig

# ---------------------------------------------------------------------------------------------
#                                3D rotary position embedding
# ---------------------------------------------------------------------------------------------


def rope_axis_dims(head_dim: int) -> tuple[int, int, int]:
    """How many channels of each head rotate with time, height and width (each even)."""
    if head_dim % 2 or head_dim < 6:
        raise ValueError(f"3D RoPE needs an even head dim >= 6, got {head_dim}")
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def rope_cos_sin(
    positions: torch.Tensor,
    head_dim: int,
    theta: float = 10000.0,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation tables for tokens at `positions` (N, 3) = (t, h, w): cos and signed sin, each
    (N, head_dim) in `dtype` (the activations' dtype: under bf16 RoPE runs in bf16).

    Each axis owns a slice of the channel pairs with its own frequency ladder, so the product
    q·k after rotation depends only on the position difference along each axis. Channel i pairs
    with i + head_dim/2; the tables hold both halves, so `apply_rope` is two products and a sum.
    """
    angles = []
    for axis, dim in enumerate(rope_axis_dims(head_dim)):
        freqs = theta ** (
            -torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim
        )
        angles.append(positions[:, axis, None].double() * freqs[None])  # (N, dim/2)
    angle = torch.cat(angles, dim=-1)  # (N, head_dim/2), computed in float64
    cos, sin = angle.cos(), angle.sin()
    return torch.cat([cos, cos], dim=-1).to(dtype), torch.cat([-sin, sin], dim=-1).to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (i, i + head_dim/2) of x (B, heads, N, head_dim) by the tables of
    `rope_cos_sin`: (x1 cos - x2 sin, x2 cos + x1 sin), in x's dtype."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([x2, x1], dim=-1) * sin


# ---------------------------------------------------------------------------------------------
#                                  Embedding and attention
# ---------------------------------------------------------------------------------------------


class TimestepEmbedder(nn.Module):
    """Embeds flow times t in [0, 1] into vectors: sinusoids, then a two-layer MLP."""

    def __init__(self, hidden_size: int, frequency_size: int = 256):
        super().__init__()
        self.frequency_size = frequency_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )

    def sinusoids(self, t: torch.Tensor, max_period: float = 10000.0) -> torch.Tensor:
        """(B,) -> (B, frequency_size); t is scaled by 1000 so [0, 1] spans DiT's step range."""
        half = self.frequency_size // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
        args = 1000.0 * t.float()[:, None] * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = self.sinusoids(t).to(self.mlp[0].weight.dtype)
        return self.mlp(emb)  # (B, D)


class ScaledDotProductAttention(nn.Module):
    """softmax(q k^T / sqrt(d)) v over all tokens: the one call a sequence-parallel wrapper replaces."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, head_dim)


class Attention(nn.Module):
    """Multi-head self-attention with 3D RoPE on q and k."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden size {hidden_size} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)
        self.attend = ScaledDotProductAttention()

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.num_heads, D // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        out = self.attend(q, k, v)  # (B, heads, N, head_dim)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))


# ---------------------------------------------------------------------------------------------
#                                    Blocks and final layer
# ---------------------------------------------------------------------------------------------


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (B, N, D) with per-sample shift and scale (B, D)."""
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """Pre-norm transformer block whose norms are modulated by the timestep (adaLN-Zero)."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, shared_adaln: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        mlp_hidden = int(hidden_size * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, mlp_hidden),
            nn.GELU(approximate="tanh"),
            nn.Linear(mlp_hidden, hidden_size),
        )
        self.shared_adaln = shared_adaln
        if shared_adaln:  # this block's offset to the shared modulation
            self.adaln_table = nn.Parameter(torch.zeros(6, hidden_size))
        else:
            self.adaln_modulation = nn.Sequential(
                nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size)
            )

    def modulation(self, c: torch.Tensor) -> torch.Tensor:
        """(B, 6, D) shifts, scales and gates, from the shared modulation (B, 6D) or c (B, D)."""
        if self.shared_adaln:
            return c.view(c.shape[0], 6, -1) + self.adaln_table[None]
        return self.adaln_modulation(c).view(c.shape[0], 6, -1)

    def forward(
        self, x: torch.Tensor, c: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).unbind(1)  # (B, D)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1), cos, sin)
        x = x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))
        return x  # (B, N, D)


class FinalLayer(nn.Module):
    """Modulated norm, then a linear map from each token to its patch of output channels."""

    def __init__(self, hidden_size: int, patch_dim: int, shared_adaln: bool):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_dim)
        self.shared_adaln = shared_adaln
        if shared_adaln:
            self.adaln_table = nn.Parameter(torch.zeros(2, hidden_size))
        else:
            self.adaln_modulation = nn.Sequential(
                nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size)
            )

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.shared_adaln:
            shift, scale = (c[:, None] + self.adaln_table[None]).unbind(1)  # (B, D) each
        else:
            shift, scale = self.adaln_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))  # (B, N, patch_dim)


# ---------------------------------------------------------------------------------------------
#                                          The model
# ---------------------------------------------------------------------------------------------


class DiT(nn.Module):
    """Video diffusion transformer: `forward(x_t, t, cond, mask)` predicts the flow velocity."""

    def __init__(
        self,
        in_channels: int,
        depth: int,
        hidden_size: int,
        num_heads: int,
        patch_t: int = 1,
        patch_hw: int = 2,
        mlp_ratio: float = 4.0,
        rope_theta: float = 10000.0,
        adaln: str = "single",
        activation_checkpointing: bool = False,
    ):
        super().__init__()
        if adaln not in ("single", "per_block"):
            raise ValueError(f"adaln must be 'single' or 'per_block', got {adaln!r}")
        self.in_channels = in_channels
        self.patch = (patch_t, patch_hw, patch_hw)
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        rope_axis_dims(self.head_dim)  # fail early on an unusable head size
        self.rope_theta = rope_theta
        self.activation_checkpointing = activation_checkpointing
        shared = adaln == "single"
        patch_volume = patch_t * patch_hw * patch_hw
        # Input per token: noisy latent (C) + condition frames (C) + mask (1), over one patch.
        self.x_embedder = nn.Linear((2 * in_channels + 1) * patch_volume, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        # adaLN-single: one modulation MLP for all blocks, (B, D) -> (B, 6D).
        self.t_modulation = (
            nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size)) if shared else None
        )
        self.blocks = nn.ModuleList(
            DiTBlock(hidden_size, num_heads, mlp_ratio, shared) for _ in range(depth)
        )
        self.final_layer = FinalLayer(hidden_size, in_channels * patch_volume, shared)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's init: Xavier linears, N(0, 0.02) timestep MLP, zero modulation and output."""

        def _basic_init(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

        self.apply(_basic_init)
        for layer in (self.t_embedder.mlp[0], self.t_embedder.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        modulations = [self.t_modulation] if self.t_modulation is not None else []
        modulations += [
            getattr(m, "adaln_modulation", None) for m in (*self.blocks, self.final_layer)
        ]
        for mod in modulations:
            if mod is not None:
                nn.init.zeros_(mod[-1].weight)
                nn.init.zeros_(mod[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    # -- the steps of forward, each usable on its own by a sequence-parallel wrapper ----------

    def grid(self, shape: torch.Size) -> tuple[int, int, int]:
        """Tokens along (t, h, w) for a latent video of `shape` (B, C, T, H, W)."""
        T, H, W = shape[-3:]
        pt, ph, pw = self.patch
        if T % pt or H % ph or W % pw:
            raise ValueError(
                f"latent video of T x H x W = {T} x {H} x {W} does not divide into patches of "
                f"{pt} x {ph} x {pw}; change data.frames / data.resolution or model.patch_t / patch_hw"
            )
        return T // pt, H // ph, W // pw

    def positions(self, grid: tuple[int, int, int], device: torch.device) -> torch.Tensor:
        """(N, 3) integer (t, h, w) positions of the tokens, in `embed`'s order."""
        axes = [torch.arange(n, device=device) for n in grid]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)

    def embed(
        self, x_t: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Concatenate inputs on channels and embed patches: tokens (B, N, D), positions (N, 3)."""
        if not (x_t.shape == cond.shape and mask.shape[1] == 1 and mask.shape[2:] == x_t.shape[2:]):
            raise ValueError(
                f"expected x_t and cond (B, C, T, H, W) and mask (B, 1, T, H, W); got "
                f"{tuple(x_t.shape)}, {tuple(cond.shape)}, {tuple(mask.shape)}"
            )
        x = torch.cat([x_t, cond, mask.to(x_t.dtype)], dim=1)  # (B, 2C+1, T, H, W)
        grid = self.grid(x.shape)
        tokens = self.x_embedder(patchify(x, self.patch))  # (B, N, D)
        return tokens, self.positions(grid, x.device)

    def backbone(
        self, tokens: torch.Tensor, positions: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """Transformer blocks and final layer: tokens (B, N, D) -> patches (B, N, C * patch volume)."""
        c = self.t_embedder(t)  # (B, D)
        block_c = self.t_modulation(c) if self.t_modulation is not None else c  # (B, 6D) or (B, D)
        cos, sin = rope_cos_sin(positions, self.head_dim, self.rope_theta, _compute_dtype(tokens))
        for block in self.blocks:
            if self.activation_checkpointing and self.training:
                tokens = checkpoint(block, tokens, block_c, cos, sin, use_reentrant=False)
            else:
                tokens = block(tokens, block_c, cos, sin)
        return self.final_layer(tokens, c)

    def unpatchify(self, patches: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """(B, N, C * patch volume) -> (B, C, T, H, W) for an input video of `shape`."""
        B, _, T, H, W = shape
        pt, ph, pw = self.patch
        x = patches.view(B, T // pt, H // ph, W // pw, self.in_channels, pt, ph, pw)
        x = x.permute(0, 4, 1, 5, 2, 6, 3, 7)  # (B, C, T', pt, H', ph, W', pw)
        return x.reshape(B, self.in_channels, T, H, W)

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """x_t, cond: (B, C, T, H, W); t: (B,) in [0, 1]; mask: (B, 1, T, H, W) -> (B, C, T, H, W)."""
        tokens, positions = self.embed(x_t, cond, mask)
        patches = self.backbone(tokens, positions, t)
        return self.unpatchify(patches, x_t.shape)

    def compile_blocks(self, backend: str = "inductor") -> None:
        """`torch.compile` each block in place (`parallel.compile`): RoPE, norms, modulation and
        the MLP's activation fuse into few kernels. Parameters and state_dict keys are unchanged."""
        for block in self.blocks:
            block.compile(backend=backend)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the blocks' matmuls produce: autocast's if it is on, else the activations'."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def patchify(x: torch.Tensor, patch: tuple[int, int, int]) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, N, C * pt * ph * pw), tokens in (t, h, w) raster order."""
    B, C, T, H, W = x.shape
    pt, ph, pw = patch
    x = x.view(B, C, T // pt, pt, H // ph, ph, W // pw, pw)
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # (B, T', H', W', C, pt, ph, pw)
    return x.reshape(B, (T // pt) * (H // ph) * (W // pw), C * pt * ph * pw)


# ---------------------------------------------------------------------------------------------
#                                          Sizes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiTSize:
    depth: int
    hidden_size: int
    num_heads: int
    paper_params: float | None = None  # as reported in the paper (4 latent channels, patch 2)


DIT_CONFIGS: dict[str, DiTSize] = {
    "micro": DiTSize(depth=1, hidden_size=32, num_heads=2),  # a second CPU-test size (studies)
    "tiny": DiTSize(depth=2, hidden_size=64, num_heads=4),
    # tiny one block deeper, for CPU studies (configs/studies/cpu_mini.yaml): S is ~100x tiny per
    # step, and 4 blocks of width 128 measured 5x tiny, too slow for a study of an hour on 2 cores
    "mini": DiTSize(depth=3, hidden_size=64, num_heads=4),
    "S": DiTSize(depth=12, hidden_size=384, num_heads=6, paper_params=22.5e6),
    "B": DiTSize(depth=12, hidden_size=768, num_heads=12, paper_params=89.5e6),
    "L": DiTSize(depth=24, hidden_size=1024, num_heads=16, paper_params=310e6),
    "XL": DiTSize(depth=28, hidden_size=1152, num_heads=16, paper_params=456e6),
}


def build_dit(cfg: ModelConfig, latent_channels: int) -> DiT:
    """The DiT of `cfg.size` over latents with `latent_channels` channels."""
    if cfg.size not in DIT_CONFIGS:
        raise ValueError(f"unknown model.size {cfg.size!r}; choose one of {list(DIT_CONFIGS)}")
    size = DIT_CONFIGS[cfg.size]
    token_values = latent_channels * cfg.patch_t * cfg.patch_hw**2  # predicted per token
    if token_values > size.hidden_size:
        # A token cannot carry more values than its width: the loss then stalls at the share it
        # cannot represent (seen with DiT-tiny on 48-channel pixel latents in 2x2 patches).
        warnings.warn(
            f"DiT-{cfg.size} (hidden {size.hidden_size}) predicts {token_values} values per token "
            f"({latent_channels} latent channels x patch {cfg.patch_t}x{cfg.patch_hw}x"
            f"{cfg.patch_hw}): it cannot fit them; lower model.patch_hw, vae.downsample, or use a "
            "larger model.size",
            stacklevel=2,
        )
    return DiT(
        in_channels=latent_channels,
        depth=size.depth,
        hidden_size=size.hidden_size,
        num_heads=size.num_heads,
        patch_t=cfg.patch_t,
        patch_hw=cfg.patch_hw,
        mlp_ratio=cfg.mlp_ratio,
        rope_theta=cfg.rope_theta,
        adaln=cfg.adaln,
        activation_checkpointing=cfg.activation_checkpointing,
    )


def count_params(model: nn.Module) -> int:
    """Number of parameters (works on the meta device)."""
    return sum(p.numel() for p in model.parameters())


def describe(model: DiT, size: str) -> str:
    """One line for the start of a run: the size, its parameter count and the paper's."""
    n = count_params(model)
    paper = DIT_CONFIGS[size].paper_params if size in DIT_CONFIGS else None
    vs = f" (paper: {paper / 1e6:.1f}M)" if paper else ""
    return f"DiT-{size}: {n / 1e6:.2f}M parameters{vs}"
