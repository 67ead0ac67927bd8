"""The Gaussian conditional of a gained latent (mean and scale, Minnen et al. 2018): one object
serves the training likelihoods, the refinement's rate and the exact integer coding, so the
three cannot drift apart.

Each symbol's (mu, log sigma) is given for the ungained latent (by h_s, perhaps corrected by a
context: `checkerboard.py`), so one prior serves every quality; the quality's gain scales them:

    y·gain -round around mu·gain-> symbol ~ N(0, sigma·gain) over unit bins -> ŷ = (symbol + mu·gain)·inv_gain

At coding time the parameters come from exact integer networks in fixed point. The gained mean
is kept to 1/2**MEAN_BITS and sigma·gain only chooses one of 64 integer tables (`tables.py`),
so encoder and decoder pick the same table for every symbol on every machine.

`nets` in every method maps names to the networks a context model runs (none here): the
model's own in training, their float twins in refinement, their integer forms in coding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import torch

from nic.entropy import coder
from nic.entropy.gaussian import SCALE_MAX, SCALE_MIN, SCALE_TABLE, gaussian_bin_probability
from nic.entropy.quantize import noisy, ste_round
from nic.entropy.tables import TableSet, gaussian_tables
from nic.runtime.integer import FRAC_BITS, round_shift

MEAN_BITS = 8  # fixed-point fraction of the gained mean used to centre each symbol
GAINS = ("gain_fp", "log_gain_fp", "inv_gain_fp")  # per-quality fixed-point gains, (qualities, M)

Net = Callable[[torch.Tensor], torch.Tensor]
Nets = Mapping[str, Net]
# Refinement's rounding: the gained means a pass predicts -> the rounded residual y·gain - mean.
Rounding = Callable[[torch.Tensor], torch.Tensor]


class LatentEntropy(Protocol):
    """What a model asks of its latent's entropy model (`GaussianConditional`, or a composition
    of it such as `checkerboard.Checkerboard`), given the ungained (mu, log sigma) `hyper`."""

    streams: int  # latent sections it writes
    nets: tuple[str, ...]  # names of the model's networks it runs, passed in as `nets`

    def likelihoods(self, nets: Nets, y: torch.Tensor, hyper: torch.Tensor, gain: torch.Tensor,
                    inv_gain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def rate(self, nets: Nets, hyper: torch.Tensor, rounding: Rounding, gain: torch.Tensor,
             inv_gain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def export(self, gain: torch.Tensor, inv_gain: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def load(self, tensors: dict[str, torch.Tensor]) -> None: ...

    def quality_gains(self, quality: int) -> tuple[torch.Tensor, torch.Tensor]: ...

    def encode(self, nets: Nets, y: torch.Tensor, hyper: torch.Tensor, quality: int) -> list[bytes]: ...

    def decode(self, nets: Nets, streams: list[bytes], hyper: torch.Tensor, quality: int,
               terminated: bool) -> torch.Tensor: ...


class GaussianConditional:
    """The latent coded in one stream, every symbol's table from the given parameters."""

    streams = 1  # latent sections it writes
    nets: tuple[str, ...] = ()  # networks that read decoded symbols: none

    def __init__(self) -> None:
        self.tables: coder.Categoricals | None = None  # set by `load`, with `fixed`
        self.fixed: dict[str, torch.Tensor] = {}

    # ---- float: training and refinement ----

    @staticmethod
    def gained(hyper: torch.Tensor, gain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gained mean, gained sigma) from the ungained (mu, log sigma)."""
        mu, log_sigma = hyper.chunk(2, dim=1)
        return mu * gain, log_sigma.exp().clamp(SCALE_MIN, SCALE_MAX) * gain

    def likelihoods(self, nets: Nets, y: torch.Tensor, hyper: torch.Tensor, gain: torch.Tensor,
                    inv_gain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: (bits of every symbol under additive noise, ŷ rounded straight-through for g_s)."""
        y_g = y * gain
        mu_g, sigma_g = self.gained(hyper, gain)
        bits = -torch.log2(gaussian_bin_probability(noisy(y_g) - mu_g, sigma_g))
        mu_g = mu_g.detach()  # the rounding's gradient to mu cancels exactly: skip computing it
        return bits, (ste_round(y_g - mu_g) + mu_g) * inv_gain

    def rate(self, nets: Nets, hyper: torch.Tensor, rounding: Rounding, gain: torch.Tensor,
             inv_gain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Refinement: (bits of every symbol, ŷ) of the latent that `rounding` rounds around the
        predicted means, differentiably, priced as the coder will spend them."""
        mu_g, sigma_g = self.gained(hyper, gain)
        residual = rounding(mu_g)
        return -torch.log2(gaussian_bin_probability(residual, sigma_g)), (residual + mu_g) * inv_gain

    # ---- exact coding ----

    @staticmethod
    @torch.no_grad()
    def export(gain: torch.Tensor, inv_gain: torch.Tensor) -> dict[str, torch.Tensor]:
        """The coding tensors: per-quality fixed-point gains ((qualities, M) float gains in), the
        log-scale thresholds between tables, and the integer tables."""
        log_table = SCALE_TABLE.log()
        thresholds = (log_table[:-1] + log_table[1:]) / 2  # nearest table in log scale
        return {
            "coding.gain_fp": torch.round(gain * 2**FRAC_BITS).long(),
            "coding.log_gain_fp": torch.round(gain.log() * 2**FRAC_BITS).long(),
            "coding.inv_gain_fp": torch.round(inv_gain * 2**FRAC_BITS).long(),
            "coding.thresholds": torch.round(thresholds * 2**FRAC_BITS).long(),
        } | gaussian_tables().to_tensors("coding.y")

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        self.tables = coder.Categoricals(TableSet.from_tensors(tensors, "coding.y"))
        self.fixed = {k: tensors[f"coding.{k}"] for k in (*GAINS, "thresholds")}

    def quality_gains(self, quality: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The gain and inverse gain (1, M, 1, 1) that coding uses at `quality`, as floats."""
        return tuple(self.fixed[k][quality - 1].float().div(2**FRAC_BITS)[None, :, None, None]
                     for k in ("gain_fp", "inv_gain_fp"))

    def parameters(self, hyper: torch.Tensor, quality: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact integer (gained mean in 1/2**MEAN_BITS units, table index) of every symbol, from
        the fixed-point (mu, log sigma) of the integer networks."""
        mu, log_sigma = hyper.long().chunk(2, dim=1)
        g = self.fixed["gain_fp"][quality - 1][None, :, None, None]
        mu_g = round_shift(mu * g, 2 * FRAC_BITS - MEAN_BITS)
        log_sigma_g = log_sigma + self.fixed["log_gain_fp"][quality - 1][None, :, None, None]
        index = torch.searchsorted(self.fixed["thresholds"], log_sigma_g.flatten()).view_as(log_sigma_g)
        return mu_g, index

    def quantize(self, y: torch.Tensor, mu_g: torch.Tensor, quality: int) -> torch.Tensor:
        """The symbols of the ungained latent y around their exact gained means."""
        gain, _ = self.quality_gains(quality)
        return torch.round(y * gain - mu_g.float() / 2**MEAN_BITS).long()

    def dequantize(self, symbols: torch.Tensor, mu_g: torch.Tensor, quality: int) -> torch.Tensor:
        """Symbols and their gained means -> ŷ in fixed point (the input of g_s), exactly."""
        inv_gain = self.fixed["inv_gain_fp"][quality - 1][None, :, None, None]
        return round_shift(symbols.bitwise_left_shift(MEAN_BITS).add_(mu_g).mul_(inv_gain), MEAN_BITS)

    def encode_symbols(self, symbols: torch.Tensor, index: torch.Tensor) -> bytes:
        return coder.encode(symbols.numpy(), index.numpy(), self.tables)

    def decode_symbols(self, stream: bytes, index: torch.Tensor, terminated: bool) -> torch.Tensor:
        """The symbols of one stream, coded with the tables `index`, in its shape."""
        return torch.from_numpy(coder.decode(stream, index.numpy(), self.tables, terminated)).view(index.shape)

    def encode(self, nets: Nets, y: torch.Tensor, hyper: torch.Tensor, quality: int) -> list[bytes]:
        """The ungained latent y (1, M, h, w) -> its stream, under the fixed-point parameters `hyper`."""
        mu_g, index = self.parameters(hyper, quality)
        return [self.encode_symbols(self.quantize(y, mu_g, quality), index)]

    def decode(self, nets: Nets, streams: list[bytes], hyper: torch.Tensor, quality: int,
               terminated: bool) -> torch.Tensor:
        """`encode`'s streams -> ŷ in fixed point."""
        mu_g, index = self.parameters(hyper, quality)
        return self.dequantize(self.decode_symbols(streams[0], index, terminated), mu_g, quality)
