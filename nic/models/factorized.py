"""Factorized prior (Ballé et al. 2018): the small model, one learned density per channel.

The density describes the ungained latent y; the probability of a gained, rounded symbol k is
the density's mass on [(k - 1/2)/gain, (k + 1/2)/gain], so one density serves every quality.
"""

from __future__ import annotations

import torch

from nic.entropy.factorized import FactorizedDensity
from nic.entropy.quantize import noisy, ste_round
from nic.models.factorized_latent import FactorizedLatentCodec
from nic.models.gains import GainTable
from nic.runtime.layers import analysis_transform, synthesis_transform


class FactorizedPrior(FactorizedLatentCodec):
    downsampling = 16
    latent_stride = 16

    def __init__(self, N: int = 64, M: int = 96, levels: int = 8,
                 lmbda_min: float = 0.0015, lmbda_max: float = 0.12):
        super().__init__(dict(N=N, M=M, levels=levels, lmbda_min=lmbda_min, lmbda_max=lmbda_max))
        self.g_a = analysis_transform(N, M)
        self.g_s = synthesis_transform(N, M)
        self.y_density = FactorizedDensity(M)
        self.gain = GainTable(levels, M, lmbda_min, lmbda_max)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.g_a(x)
        gain, inv_gain = self.gain(t)
        y_g = y * gain
        y_tilde = noisy(y_g)
        p = self.y_density.bin_probability((y_tilde - 0.5) / gain, (y_tilde + 0.5) / gain)
        x_hat = self.g_s(ste_round(y_g) * inv_gain)
        return {"x_hat": x_hat, "bits": -torch.log2(p).sum((1, 2, 3))}
