"""The Gaussian conditional: probabilities of unit bins under N(mu, sigma), and its scale table.

At coding time sigma is never used directly: it selects one of `SCALE_TABLE`'s integer CDF
tables (see `tables.py`), so the decoder's choice cannot drift with floating point.
"""

from __future__ import annotations

import math

import torch

from nic.entropy.factorized import LIKELIHOOD_MIN

SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 256.0, 64
# Log-spaced scales: table k is used for sigma in (SCALE_TABLE[k-1], SCALE_TABLE[k]].
SCALE_TABLE = torch.exp(
    torch.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS, dtype=torch.float64)
)


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x * (2**-0.5))


def gaussian_bin_probability(v: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """P(v - 1/2 < X <= v + 1/2) for X ~ N(0, sigma), v already centred on the mean."""
    with torch.autocast(v.device.type, enabled=False):  # CDF tails need float32
        sigma = sigma.float().clamp(SCALE_MIN, SCALE_MAX)
        v = v.float().abs()
        p = _std_normal_cdf((0.5 - v) / sigma) - _std_normal_cdf((-0.5 - v) / sigma)
        return p.clamp_min(LIKELIHOOD_MIN)
