"""Building blocks shared by the architectures: strided convs and (inverse) GDN."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def conv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    """A 'same'-padded conv that downsamples by `stride`."""
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def deconv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """A transposed conv that upsamples by exactly `stride` (inverse shape of `conv`)."""
    return nn.ConvTranspose2d(
        cin, cout, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1
    )


class GDN(nn.Module):
    """Simplified generalized divisive normalization (Johnston et al. 2019).

    y_i = x_i / (beta_i + sum_j gamma_ij |x_j|); `inverse=True` multiplies instead (IGDN).
    The L1 form needs no square root and trains as well as Ballé's original on RD loss.
    beta and gamma are kept non-negative by storing their square roots.
    """

    BETA_FLOOR = 1e-6  # added to beta, so that the norm never reaches zero

    def __init__(self, channels: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta_sqrt = nn.Parameter(torch.ones(channels))
        self.gamma_sqrt = nn.Parameter(torch.eye(channels).mul(0.1).add(1e-3).sqrt())

    def coefficients(self, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(beta, gamma) as the layer applies them; with `dtype`, detached and computed in it
        (the integer and fast decoders derive theirs in float64)."""
        b, g = self.beta_sqrt, self.gamma_sqrt
        if dtype is not None:
            b, g = b.detach().to(dtype), g.detach().to(dtype)
        return b.square() + self.BETA_FLOOR, g.square()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta, gamma = self.coefficients()
        c = gamma.shape[0]
        norm = F.conv2d(x.abs(), gamma.view(c, c, 1, 1), beta)
        return x * norm if self.inverse else x / norm


def analysis_transform(N: int, M: int) -> nn.Sequential:
    """g_a of Ballé et al.: four 5x5 stride-2 convs with GDN, image -> latent at 1/16."""
    return nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M))


def synthesis_transform(N: int, M: int) -> nn.Sequential:
    """g_s: the mirror of `analysis_transform`, with transposed convs and inverse GDN."""
    return nn.Sequential(
        deconv(M, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True),
        deconv(N, N), GDN(N, inverse=True), deconv(N, 3),
    )
