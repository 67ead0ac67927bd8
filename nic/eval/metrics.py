"""Quality metrics on 8-bit RGB arrays, as papers report them (per image, then averaged)."""

from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_msssim import ms_ssim, ssim


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images of the same shape (inf when identical)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _tensor(a: np.ndarray) -> torch.Tensor:
    """float32, not float64: on CPU it is ~8x faster and agrees with float64 to about 1e-7."""
    a = a if a.ndim == 3 else a[:, :, None]
    return torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)[None]


def ssim_rgb(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Gaussian window 11, sigma 1.5) averaged over channels."""
    return float(ssim(_tensor(a), _tensor(b), data_range=255, size_average=True))


def msssim_rgb(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM (5 scales); images with a side under 161 px use a smaller window."""
    side = min(a.shape[:2])
    win = 11 if side > 160 else max(3, (side // 16) | 1)
    if side < 2 ** 4 * (win - 1) + 1:
        return float("nan")  # too small for five scales at any window
    return float(ms_ssim(_tensor(a), _tensor(b), data_range=255, size_average=True, win_size=win))


METRICS = {"psnr": psnr, "ssim": ssim_rgb, "msssim": msssim_rgb}
