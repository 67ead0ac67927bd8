"""Factorized prior (Ballé et al. 2018): the small model, one learned density per channel.

The density describes the ungained latent y; the probability of a gained, rounded symbol k is
the density's mass on [(k - 1/2)/gain, (k + 1/2)/gain], so one density serves every quality.
"""

from __future__ import annotations

import torch
from torch import nn

from nic.entropy import coder
from nic.entropy.factorized import FactorizedDensity
from nic.entropy.tables import TableSet, density_tables
from nic.errors import FormatError
from nic.models.integer import FRAC_BITS, coding_nets, export_nets, to_pixels
from nic.models.layers import GDN, conv, deconv
from nic.models.quantize import noisy, ste_round
from nic.models.rate import GainTable


class FactorizedPrior(nn.Module):
    downsampling = 16
    integer_only = ("g_s.",)  # exported as an exact integer network only
    integer_nets = {"g_s": FRAC_BITS}

    def __init__(self, N: int = 128, M: int = 192, levels: int = 8,
                 lmbda_min: float = 0.0015, lmbda_max: float = 0.12):
        super().__init__()
        self.config = dict(N=N, M=M, levels=levels, lmbda_min=lmbda_min, lmbda_max=lmbda_max)
        self.g_a = nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M))
        self.g_s = nn.Sequential(
            deconv(M, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True),
            deconv(N, N), GDN(N, inverse=True), deconv(N, 3),
        )
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

    # ---- coding: everything below runs on exported weights (see `export_coding`) ----

    @torch.no_grad()
    def export_coding(self) -> dict[str, torch.Tensor]:
        """One integer table per (quality, channel), and the per-quality gains."""
        gain, inv_gain = self.gain.quality_gains()
        gain = gain.float()  # the encoder multiplies in float32; tabulate for exactly that gain
        return {"coding.gain": gain, "coding.inv_gain_fp": torch.round(inv_gain * 2**FRAC_BITS).long(),
                **density_tables(self.y_density, gain.double()).to_tensors("coding.y"),
                **export_nets(self, self.integer_nets)}

    def load_coding(self, tensors: dict[str, torch.Tensor]) -> None:
        self.coding = {"y": coder.Models(TableSet.from_tensors(tensors, "coding.y")),
                       "gain": tensors["coding.gain"], "inv_gain_fp": tensors["coding.inv_gain_fp"],
                       **coding_nets(self, self.integer_nets, tensors)}

    def _index(self, shape: tuple[int, ...], quality: int) -> torch.Tensor:
        m = shape[1]
        return ((quality - 1) * m + torch.arange(m)).view(1, -1, 1, 1).expand(shape)

    @torch.inference_mode()
    def compress(self, x: torch.Tensor, quality: int) -> list[bytes]:
        y = self.g_a(x) * self.coding["gain"][quality - 1][None, :, None, None]
        y_sym = torch.round(y).long()
        return [coder.encode(y_sym.numpy(), self._index(y_sym.shape, quality).numpy(), self.coding["y"])]

    @torch.inference_mode()
    def decompress(self, streams: list[bytes], height: int, width: int, quality: int) -> torch.Tensor:
        if len(streams) != 1:
            raise FormatError(f"factorized model expects 1 latent section, found {len(streams)}")
        shape = (1, self.config["M"], height // 16, width // 16)
        index = self._index(shape, quality)
        y_sym = torch.from_numpy(coder.decode(streams[0], index.numpy(), self.coding["y"])).view(shape)
        inv_gain = self.coding["inv_gain_fp"][quality - 1][None, :, None, None]
        return to_pixels(self.coding["g_s"](y_sym * inv_gain))
