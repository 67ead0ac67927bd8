"""The factorized (non-parametric, per-channel) density of Ballé et al. 2018, appendix 6.1.

Each channel has its own monotone CDF, built from a cascade of small softplus-positive
matrices with tanh 'factors'. The model gives probabilities of unit-width bins directly,
which is what the rate term needs, and is tabulated to integer CDFs when a model is exported.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

LIKELIHOOD_MIN = 1e-9


class FactorizedDensity(nn.Module):
    """A learned univariate density per channel, evaluated on bins [lower, upper]."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        self.channels = channels
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def logits_cdf(self, x: torch.Tensor) -> torch.Tensor:
        """Logit of the CDF at `x`, shaped (channels, 1, n)."""
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases, strict=True)):
            x = torch.matmul(F.softplus(matrix), x) + bias
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def bin_probability(self, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        """P(lower < v <= upper) for (B, C, H, W) tensors, channel c under density c."""
        with torch.autocast(lower.device.type, enabled=False):  # CDF tails need float32
            return self._bin_probability(lower.float(), upper.float())

    def _bin_probability(self, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        b, c, h, w = lower.shape
        flat = torch.stack([lower, upper]).permute(2, 0, 1, 3, 4).reshape(c, 1, -1)
        logits = self.logits_cdf(flat).reshape(c, 2, b, h, w).permute(1, 2, 0, 3, 4)
        lo, up = logits[0], logits[1]
        # Evaluate in the tail that keeps sigmoid away from 1, where float loses precision.
        sign = -torch.sign(lo + up).detach()
        p = (torch.sigmoid(sign * up) - torch.sigmoid(sign * lo)).abs()
        return p.clamp_min(LIKELIHOOD_MIN)
