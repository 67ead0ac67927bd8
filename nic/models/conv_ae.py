"""The plain convolutional autoencoder this project grew from, made into a real codec.

As the original: conv + ReLU + max-pool stages down, nearest upsampling + conv + ReLU stages
up, a sigmoid output. Its latent is quantized and entropy coded with a factorized density
(one per channel), so every file holds real bits.

Two ways to train it, chosen by the config:
- as the original (the default): MSE alone, the autoencoder never sees the
  quantizer; the density is fitted alongside on detached latents and each quality is a fixed
  quantizer step. This is how the first release was made; it codes poorly, because nothing
  taught the latent to be cheap.
- for rate (`rate_trained = true`): rate + lambda * MSE with the quantizer in the loop (noise for the rate,
  rounding straight-through for the decoder) and learned per-quality gains, as every other
  latent model here. The one change to the design is a linear bottleneck (`latent_relu =
  false`): a ReLU there cuts the latent's negative half, so half its pre-activations get no
  gradient and the density sees a spike at zero.
"""

from __future__ import annotations

import torch
from torch import nn

from nic.entropy.factorized import FactorizedDensity
from nic.entropy.quantize import noisy, ste_round
from nic.models.factorized_latent import FactorizedLatentCodec
from nic.models.gains import GainTable
from nic.runtime.integer import sigmoid_pixels, sigmoid_thresholds


class ConvAutoencoder(FactorizedLatentCodec):
    downsampling = 4
    decode_cost = 1.2  # decode time per pixel / hyperprior's (one thread, 512x512)
    latent_stride = 4

    def __init__(self, width: int = 64, latent: int = 16, levels: int = 8,
                 step_max: float = 2.0, step_min: float = 0.02, lmbda_min: float = 1.0, lmbda_max: float = 1.0,
                 widths: tuple[int, ...] = (), latent_relu: bool = True, rate_trained: bool = False,
                 density_scale: float = 10.0):
        """`widths`: channels of each pooling stage, outermost first (default: `width`, then
        half of it, the first release's two stages); the latent is at 1/2**len(widths).
        `step_max`/`step_min`: the fixed quantizer steps of a model not trained for rate.
        `density_scale`: the initial width of the latent density. A fresh g_a's latents are
        ~0.03 wide and the density narrows by only ~1e-5 per step, so the default (10, Ballé's)
        cost a rate-trained model 5 bits per latent for its first thousands of steps."""
        widths = list(widths or (width, width // 2))
        super().__init__(dict(width=width, latent=latent, levels=levels, step_max=step_max, step_min=step_min,
                              lmbda_min=lmbda_min, lmbda_max=lmbda_max, widths=widths, latent_relu=latent_relu,
                              rate_trained=rate_trained, density_scale=density_scale))
        self.downsampling = self.latent_stride = 2 ** len(widths)
        down: list[nn.Module] = []
        up: list[nn.Module] = [nn.Conv2d(widths[0], 3, 3, padding=1), nn.Sigmoid()]
        for cin, cout in zip([3, *widths], widths, strict=False):
            down += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        for cin, cout in zip(widths[1:], widths, strict=False):
            up = [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2), *up]
        self.g_a = nn.Sequential(*down, nn.Conv2d(widths[-1], latent, 3, padding=1), *[nn.ReLU()] * latent_relu)
        self.g_s = nn.Sequential(nn.Conv2d(latent, widths[-1], 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2),
                                 *up)
        self.y_density = FactorizedDensity(latent, init_scale=density_scale)
        self.rate_trained = rate_trained
        steps = None if rate_trained else (step_max, step_min)
        self.gain = GainTable(levels, latent, lmbda_min, lmbda_max, steps=steps)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """Rate-trained: the quantizer sits in the loop (noise for the rate, straight-through
        rounding for the decoder). As the original: the autoencoder trains on MSE of its
        unquantized latent and the density on a detached copy at the sampled step."""
        y = self.g_a(x)
        gain, inv_gain = self.gain(t)
        if self.rate_trained:
            y_g = y * gain
            x_hat = self.g_s(ste_round(y_g) * inv_gain)
        else:
            y_g, x_hat = y.detach() * gain, self.g_s(y)
        y_tilde = noisy(y_g)
        p = self.y_density.bin_probability((y_tilde - 0.5) / gain, (y_tilde + 0.5) / gain)
        return {"x_hat": x_hat, "bits": -torch.log2(p).sum((1, 2, 3))}

    # ---- coding: the shared factorized latent codec, plus the sigmoid's pixel thresholds ----

    def export_coding(self) -> dict[str, torch.Tensor]:
        return super().export_coding() | {"coding.thresholds": sigmoid_thresholds()}

    def load_coding(self, tensors: dict[str, torch.Tensor]) -> None:
        super().load_coding(tensors)
        self.coding["thresholds"] = tensors["coding.thresholds"]

    def synthesise(self, y_hat: torch.Tensor) -> torch.Tensor:
        """Exact integer decoder, sigmoid included (by integer thresholds) -> uint8 pixels."""
        return sigmoid_pixels(self.coding["g_s"](y_hat), self.coding["thresholds"])
