"""The rate-distortion objective: bpp + lambda * distortion, per sample, balanced across rates."""

from __future__ import annotations

import torch
from pytorch_msssim import ms_ssim


def rd_loss(x: torch.Tensor, out: dict[str, torch.Tensor], lmbda: torch.Tensor,
            metric: str = "mse", balance: float = 0.5) -> dict[str, torch.Tensor]:
    """Per-sample rate (bpp) and distortion; `loss` weighs each sample by lambda^-balance.

    With one lambda per sample, high-rate samples would dominate the gradient (their loss is
    ~10x larger); the weight (1/sqrt(lambda) by default) evens that out without changing any
    one sample's trade-off. 0 weighs all samples alike, 1 divides each loss by its lambda.
    """
    x_hat = out["x_hat"].float()
    bpp = out["bits"].float() / (x.shape[2] * x.shape[3])
    mse = (x_hat - x).square().mean((1, 2, 3))
    if metric == "mse":
        dist = 255**2 * mse
    elif metric == "msssim":
        dist = 1 - ms_ssim(x_hat.clamp(0, 1), x, data_range=1.0, size_average=False)
    else:
        raise ValueError(f"unknown distortion metric {metric!r}")
    weight = (lmbda.mean() / lmbda).pow(balance)
    loss = (weight * (bpp + lmbda * dist)).mean()
    psnr = -10 * torch.log10(mse.clamp_min(1e-10))
    return {"loss": loss, "bpp": bpp.mean(), "mse": mse.mean(), "psnr": psnr.mean()}
