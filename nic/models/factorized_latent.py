"""Coding of a latent with one learned density per channel and no side information.

Shared by the factorized-prior model and the plain conv autoencoder: each has `g_a`, an
integer-able `g_s`, `y_density` (of the ungained latent) and `gain` (per-quality gains).
The tables are one per (quality, channel): symbol k has the density's mass on
[(k - 1/2)/gain, (k + 1/2)/gain].
"""

from __future__ import annotations

import torch

from nic.entropy import coder
from nic.entropy.factorized import FactorizedDensity
from nic.entropy.tables import TableSet, density_tables
from nic.errors import FormatError
from nic.models.base import LatentModel
from nic.runtime.integer import FRAC_BITS, coding_nets, export_nets


class FactorizedLatentCodec(LatentModel):
    integer_nets = {"g_s": FRAC_BITS}
    encoder_params = ("g_a.", "y_density.", "gain.")  # decoding reads only coding tensors
    y_density: FactorizedDensity

    @torch.no_grad()
    def export_coding(self) -> dict[str, torch.Tensor]:
        """One integer table per (quality, channel), the per-quality gains, the integer g_s."""
        gain, inv_gain = self.gain.quality_gains()
        gain = gain.float()  # the encoder multiplies in float32; tabulate for exactly that gain
        return {"coding.gain": gain, "coding.inv_gain_fp": torch.round(inv_gain * 2**FRAC_BITS).long(),
                **density_tables(self.y_density, gain.double()).to_tensors("coding.y"),
                **export_nets(self, self.integer_nets)}

    def load_coding(self, tensors: dict[str, torch.Tensor]) -> None:
        self.coding = {"y": coder.Categoricals(TableSet.from_tensors(tensors, "coding.y")),
                       "gain": tensors["coding.gain"], "inv_gain_fp": tensors["coding.inv_gain_fp"],
                       **coding_nets(self, self.integer_nets, tensors)}

    def _index(self, shape: tuple[int, ...], quality: int) -> torch.Tensor:
        m = shape[1]
        return ((quality - 1) * m + torch.arange(m)).view(1, -1, 1, 1).expand(shape)

    @torch.inference_mode()
    def compress_latent(self, y: torch.Tensor, quality: int) -> list[bytes]:
        """The latent y = g_a(x) of a padded image -> [y stream]."""
        y_sym = torch.round(y * self.coding["gain"][quality - 1][None, :, None, None]).long()
        return [coder.encode(y_sym.numpy(), self._index(y_sym.shape, quality).numpy(), self.coding["y"])]

    @torch.inference_mode()
    def decompress_latent(self, streams: list[bytes], height: int, width: int, quality: int,
                          terminated: bool = True) -> torch.Tensor:
        """[y stream] of a padded H x W image -> ŷ in fixed point, the input of g_s."""
        if len(streams) != 1:
            raise FormatError(f"this model expects 1 latent section, found {len(streams)}")
        shape = (1, self.y_density.channels, height // self.latent_stride, width // self.latent_stride)
        index = self._index(shape, quality)
        y_sym = torch.from_numpy(coder.decode(streams[0], index.numpy(), self.coding["y"], terminated)).view(shape)
        return y_sym * self.coding["inv_gain_fp"][quality - 1][None, :, None, None]
