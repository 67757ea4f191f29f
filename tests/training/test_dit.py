"""The video DiT: sizes, RoPE, conditioning inputs, the seams used by sequence parallelism."""

import warnings

import pytest
import torch

from training.config import ModelConfig
from training.model import (
    DIT_CONFIGS,
    apply_rope,
    build_dit,
    count_params,
    patchify,
    rope_cos_sin,
)


def tiny(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_dit(ModelConfig(size="tiny", **kw), latent_channels=4)


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Give the zero-initialised modulation and output layers weights, so outputs are nontrivial."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def inputs(B=2, C=4, T=4, H=8, W=8, c=2):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(B, C, T, H, W, generator=g)
    mask = torch.zeros(B, 1, T, H, W)
    mask[:, :, :c] = 1
    return x, torch.rand(B, generator=g), x * mask, mask


@pytest.mark.parametrize("size", ["S", "B", "L", "XL"])
def test_param_counts_match_paper(size):
    with torch.device("meta"):
        model = build_dit(ModelConfig(size=size, patch_t=1, patch_hw=2), latent_channels=4)
    n = count_params(model)
    paper = DIT_CONFIGS[size].paper_params
    assert abs(n - paper) / paper < 0.02, f"DiT-{size}: {n / 1e6:.2f}M vs paper {paper / 1e6}M"


def test_per_block_adaln_adds_a_modulation_mlp_per_block():
    with torch.device("meta"):
        single = build_dit(ModelConfig(size="S"), 4)
        per_block = build_dit(ModelConfig(size="S", adaln="per_block"), 4)
    D, depth = 384, 12
    # per block: Linear(D, 6D) (weight and bias) instead of a (6, D) table; final layer:
    # Linear(D, 2D) instead of a (2, D) table; minus the shared Linear(D, 6D).
    expected = depth * (6 * D * D) + 2 * D * D - (6 * D * D + 6 * D)
    assert count_params(per_block) - count_params(single) == expected


def test_rope_depends_only_on_relative_position():
    head_dim = 24
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 1, 1, head_dim, generator=g)
    k = torch.randn(1, 1, 1, head_dim, generator=g)

    def score(pq, pk):
        cq, sq = rope_cos_sin(torch.tensor([pq], dtype=torch.float32), head_dim)
        ck, sk = rope_cos_sin(torch.tensor([pk], dtype=torch.float32), head_dim)
        return (apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum().item()

    base = score((1, 2, 3), (4, 0, 5))
    assert score((3, 7, 1), (6, 5, 3)) == pytest.approx(base, abs=1e-4)  # shifted by (2, 5, -2)
    assert score((1, 2, 3), (4, 1, 5)) != pytest.approx(base, abs=1e-3)  # different offset
    # A rotation keeps the norm.
    c, s = rope_cos_sin(torch.tensor([[5.0, 1.0, 2.0]]), head_dim)
    assert apply_rope(q, c, s).norm().item() == pytest.approx(q.norm().item(), rel=1e-5)


def test_forward_shapes_and_zero_init():
    model = tiny()
    x, t, cond, mask = inputs()
    out = model(x, t, cond, mask)
    assert out.shape == x.shape
    # adaLN-Zero: the final layer starts at zero, so the first prediction is exactly zero.
    assert torch.count_nonzero(out) == 0
    tokens, positions = model.embed(x, cond, mask)
    assert tokens.shape == (2, 4 * 4 * 4, 64) and positions.shape == (64, 3)


def test_condition_inputs_change_the_prediction():
    model = randomize(tiny())
    x, t, cond, mask = inputs()
    out = model(x, t, cond, mask)
    assert not torch.allclose(out, model(x, t, torch.zeros_like(cond), mask))
    assert not torch.allclose(out, model(x, t, cond, torch.zeros_like(mask)))
    assert not torch.allclose(out, model(x, torch.rand(2), cond, mask))


def test_bad_shapes_are_named():
    model = tiny()
    x, t, cond, mask = inputs()
    with pytest.raises(ValueError, match="mask"):
        model(x, t, cond, mask[:, :, :2])
    x, t, cond, mask = inputs(H=6, W=6)
    model = tiny(patch_hw=4)
    with pytest.raises(ValueError, match="patch"):
        model(x, t, cond, mask)


def test_patchify_inverts_unpatchify():
    model = tiny(patch_t=2, patch_hw=2)
    x, *_ = inputs(C=4)
    assert torch.equal(model.unpatchify(patchify(x, model.patch), x.shape), x)


def test_backbone_uses_explicit_positions():
    """Permuting tokens together with their positions permutes the output: a shard can run the
    backbone on any subset of tokens as long as attention sees them all (sequence parallelism)."""
    model = randomize(tiny()).eval()
    x, t, cond, mask = inputs()
    tokens, positions = model.embed(x, cond, mask)
    perm = torch.randperm(tokens.shape[1], generator=torch.Generator().manual_seed(3))
    full = model.backbone(tokens, positions, t)
    permuted = model.backbone(tokens[:, perm], positions[perm], t)
    torch.testing.assert_close(permuted, full[:, perm], rtol=1e-4, atol=1e-5)
    # ...and the positions matter: the same tokens at shuffled positions give another answer.
    assert not torch.allclose(model.backbone(tokens, positions[perm], t), full, atol=1e-3)


def test_activation_checkpointing_gives_the_same_gradients():
    grads = []
    for ckpt in (False, True):
        model = randomize(tiny(activation_checkpointing=ckpt)).train()
        x, t, cond, mask = inputs()
        model(x, t, cond, mask).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


def test_attention_core_is_replaceable():
    """The sequence-parallel seam: swapping `attn.attend` changes what every block computes."""
    model = randomize(tiny()).eval()
    x, t, cond, mask = inputs()
    calls = []

    class Recording(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, q, k, v):
            calls.append(q.shape)
            return self.inner(q, k, v)

    reference = model(x, t, cond, mask)
    for block in model.blocks:
        block.attn.attend = Recording(block.attn.attend)
    torch.testing.assert_close(model(x, t, cond, mask), reference)
    assert calls == [(2, 4, 64, 16)] * len(model.blocks)


def test_too_narrow_tokens_warn_with_the_fix():
    with pytest.warns(UserWarning, match="cannot fit them; lower model.patch_hw"):
        build_dit(ModelConfig(size="tiny", patch_hw=2), latent_channels=48)  # 192 values > 64
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_dit(ModelConfig(size="tiny", patch_hw=1), latent_channels=48)  # 48 values fit


def test_compiled_blocks_keep_parameters_and_outputs():
    """`parallel.compile`: the blocks are compiled in place (state_dict keys unchanged), and the
    compiled model computes what the eager one does (aot_eager: the traced graph, no C compiler)."""
    eager = randomize(tiny())
    compiled = randomize(tiny())
    compiled.compile_blocks(backend="aot_eager")
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    x, t, cond, mask = inputs()
    torch.testing.assert_close(compiled(x, t, cond, mask), eager(x, t, cond, mask))
    compiled(x, t, cond, mask).square().mean().backward()
    assert all(p.grad is not None for p in compiled.blocks.parameters())
