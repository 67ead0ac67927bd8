"""The plain convolutional autoencoder this project grew from, made into a real codec.

As the original: conv + ReLU + max-pool encoder, nearest upsampling + conv + ReLU decoder,
sigmoid output, trained on MSE alone (Adam 1e-3, batch 64) with no rate term. What makes it a
codec here: the latent is quantized with a step set by the quality and entropy coded with a
factorized density fitted to its latents (trained alongside, on detached latents, so the
autoencoder itself sees only MSE). Rate points come from the quantization step; the latent
width (`latent` channels at 1/4 resolution) sets the top of the range.
"""

from __future__ import annotations

import torch
from torch import nn

from nic.entropy.factorized import FactorizedDensity
from nic.models.factorized_latent import FactorizedLatentCodec
from nic.models.gains import GainTable
from nic.models.quantize import noisy
from nic.runtime.integer import sigmoid_pixels, sigmoid_thresholds


class ConvAutoencoder(FactorizedLatentCodec):
    downsampling = 4
    decode_cost = 1.2  # decode time per pixel / hyperprior's (one thread, 512x512)
    latent_stride = 4

    def __init__(self, width: int = 64, latent: int = 16, levels: int = 8,
                 step_max: float = 2.0, step_min: float = 0.02, lmbda_min: float = 1.0, lmbda_max: float = 1.0):
        super().__init__(dict(width=width, latent=latent, levels=levels, step_max=step_max, step_min=step_min,
                              lmbda_min=lmbda_min, lmbda_max=lmbda_max))
        half = width // 2
        self.g_a = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, half, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(half, latent, 3, padding=1), nn.ReLU(),
        )
        self.g_s = nn.Sequential(
            nn.Conv2d(latent, half, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2),
            nn.Conv2d(half, width, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2),
            nn.Conv2d(width, 3, 3, padding=1), nn.Sigmoid(),
        )
        self.y_density = FactorizedDensity(latent)
        self.gain = GainTable(levels, latent, lmbda_min, lmbda_max, steps=(step_max, step_min))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """The autoencoder trains on MSE of its unquantized latent, as the original did; the
        density learns the latent's distribution at the sampled step, through a detached copy."""
        y = self.g_a(x)
        gain, _ = self.gain(t)
        y_tilde = noisy(y.detach() * gain)
        p = self.y_density.bin_probability((y_tilde - 0.5) / gain, (y_tilde + 0.5) / gain)
        return {"x_hat": self.g_s(y), "bits": -torch.log2(p).sum((1, 2, 3))}

    # ---- coding: the shared factorized latent codec, plus the sigmoid's pixel thresholds ----

    def export_coding(self) -> dict[str, torch.Tensor]:
        return super().export_coding() | {"coding.thresholds": sigmoid_thresholds()}

    def load_coding(self, tensors: dict[str, torch.Tensor]) -> None:
        super().load_coding(tensors)
        self.coding["thresholds"] = tensors["coding.thresholds"]

    def synthesise(self, y_hat: torch.Tensor) -> torch.Tensor:
        """Exact integer decoder, sigmoid included (by integer thresholds) -> uint8 pixels."""
        return sigmoid_pixels(self.coding["g_s"](y_hat), self.coding["thresholds"])
