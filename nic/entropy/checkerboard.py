"""The checkerboard context model (He et al. 2021), composed over a Gaussian conditional.

The latent is coded in two halves. The anchors ((row + column) even) are coded with the
given parameters alone; then a context network reads the 12 decoded anchors within two rows
and columns of every other symbol (a 5x5 checkerboard-masked conv, written as a 1x1 conv over
the gathered neighbours) and corrects its (mu, log sigma):

    hyper = (mu, log sigma) -> code the anchors of ŷ
    hyper, context(anchor neighbours) -param_net-> hyper + delta -> code the rest of ŷ

Both halves decode in one pass each, so decoding stays parallel (a serial context model would
decode symbol by symbol). Like h_s, the context sees the ungained latent, so one network
serves every quality. Training, refinement and coding all run these two passes here, with
the networks they are handed: the model's own, their float twins, or their exact integer forms.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from nic.entropy.conditional import GaussianConditional, Nets, Rounding
from nic.entropy.quantize import ste_round
from nic.runtime.layers import conv

CHUNK = 4096  # non-anchor positions per pass of the context network when coding
# The anchors around a non-anchor symbol: (row, column) offsets of odd sum within 2.
OFFSETS = tuple((dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if (dy + dx) % 2)
Positions = tuple[torch.Tensor, torch.Tensor]  # (rows, columns) of some latent positions


def anchors(height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """(height, width) bool mask of the anchor positions, (row + column) even."""
    rows = torch.arange(height, device=device).view(-1, 1)
    cols = torch.arange(width, device=device).view(1, -1)
    return (rows + cols) % 2 == 0


def neighbours(y: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, 12 C, h, w): the values at OFFSETS around every position (zero outside)."""
    h, w = y.shape[-2:]
    padded = F.pad(y, (2, 2, 2, 2))
    return torch.cat([padded[..., 2 + dy:2 + dy + h, 2 + dx:2 + dx + w] for dy, dx in OFFSETS], dim=1)


def at(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(1, C, h, w) -> (1, C, 1, n): the n positions (rows, cols) as one row, the shape in which
    the coding networks (1x1 convs) and the entropy coder take them."""
    return x[..., rows, cols][:, :, None]


def neighbours_at(grid: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """`neighbours` at n positions, as (1, 12 C, 1, n), from the latent laid out as (h + 4,
    w + 4, C) with a border of 2: each gather reads whole rows of C values."""
    rows, cols = rows + 2, cols + 2
    return torch.cat([grid[rows + dy, cols + dx] for dy, dx in OFFSETS], dim=1).T[None, :, None]


def context_networks(channels: int) -> tuple[nn.Sequential, nn.Sequential]:
    """(context, param_net) for a latent of `channels`. The last layer of `param_net` starts at
    zero: a model started from hyperprior weights begins as exactly that model."""
    context = nn.Sequential(conv(len(OFFSETS) * channels, channels, 1, 1))
    param_net = nn.Sequential(conv(3 * channels, 2 * channels, 1, 1), nn.ReLU(),
                              conv(2 * channels, 2 * channels, 1, 1))
    nn.init.zeros_(param_net[-1].weight)
    nn.init.zeros_(param_net[-1].bias)
    return context, param_net


def _halves(height: int, width: int) -> tuple[Positions, Positions]:
    """The anchor and non-anchor positions of a height x width latent."""
    anchor = anchors(height, width)
    return anchor.nonzero(as_tuple=True), (~anchor).nonzero(as_tuple=True)


def _anchor_grid(y_hat: torch.Tensor, a_pos: Positions, height: int, width: int) -> torch.Tensor:
    """Decoded anchors (1, M, 1, n) -> the (h + 4, w + 4, M) grid that `neighbours_at` reads."""
    grid = y_hat.new_zeros(height + 4, width + 4, y_hat.shape[1])
    grid[a_pos[0] + 2, a_pos[1] + 2] = y_hat[0, :, 0].T
    return grid


class Checkerboard:
    """Two passes of `conditional`: the anchors under the given parameters, the rest under
    parameters that the networks `nets["context"]` and `nets["param_net"]` correct."""

    streams = 2  # the anchors' stream, then the rest's
    nets = ("context", "param_net")

    def __init__(self, conditional: GaussianConditional):
        self.conditional = conditional

    # ---- float: training and refinement ----

    def delta(self, nets: Nets, hyper: torch.Tensor, y_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(correction of (mu, log sigma), mask of the symbols it corrects): the second pass,
        from the anchors of the ungained ŷ."""
        later = 1 - anchors(*y_hat.shape[-2:], device=y_hat.device).to(y_hat.dtype)
        delta = nets["param_net"](torch.cat([hyper, nets["context"](neighbours(y_hat * (1 - later)))], dim=1))
        return delta * later, later

    def likelihoods(self, nets: Nets, y: torch.Tensor, hyper: torch.Tensor, gain: torch.Tensor,
                    inv_gain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: the conditional's, under the parameters that the decoded anchors correct."""
        mu, _ = hyper.chunk(2, dim=1)
        mu_g = mu * gain
        y_hat = (ste_round(y * gain - mu_g) + mu_g) * inv_gain  # what the decoder has, for the anchors
        delta, _ = self.delta(nets, hyper, y_hat)
        return self.conditional.likelihoods(nets, y, hyper + delta, gain, inv_gain)

    def rate(self, nets: Nets, hyper: torch.Tensor, rounding: Rounding, gain: torch.Tensor,
             inv_gain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Refinement, in the coder's order: the anchors round around the given means, the rest
        around the means that the context reads off the anchors' ŷ."""
        mu, _ = hyper.chunk(2, dim=1)
        mu_g = mu * gain
        first = rounding(mu_g)
        delta, later = self.delta(nets, hyper, (first + mu_g) * inv_gain)

        def second(means: torch.Tensor) -> torch.Tensor:  # the anchors keep the first pass's rounding
            return torch.where(later.bool(), rounding(means), first)

        return self.conditional.rate(nets, hyper + delta, second, gain, inv_gain)

    # ---- exact coding ----

    def export(self, gain: torch.Tensor, inv_gain: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.conditional.export(gain, inv_gain)

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        self.conditional.load(tensors)

    def quality_gains(self, quality: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.conditional.quality_gains(quality)

    def _rest_parameters(self, nets: Nets, hyper: torch.Tensor, grid: torch.Tensor, rest: Positions,
                         quality: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact (gained mean, table index), each (1, M, 1, n), of the n non-anchor symbols,
        from the hyper output and the decoded anchors (`neighbours_at`'s grid). In chunks of
        positions, so the gathered neighbours of a large image stay under ~60 MB."""
        out = []
        for r, k in zip(rest[0].split(CHUNK), rest[1].split(CHUNK), strict=True):
            h = at(hyper, r, k)
            delta = nets["param_net"](torch.cat([h, nets["context"](neighbours_at(grid, r, k))], dim=1))
            out.append(self.conditional.parameters(h + delta, quality))
        return tuple(torch.cat(parts, dim=-1) for parts in zip(*out, strict=True))

    def encode(self, nets: Nets, y: torch.Tensor, hyper: torch.Tensor, quality: int) -> list[bytes]:
        """The ungained latent y -> [anchor stream, rest stream]."""
        c = self.conditional
        a_pos, r_pos = _halves(*hyper.shape[-2:])
        mu_g, index = c.parameters(at(hyper, *a_pos), quality)
        y_anchor = c.quantize(at(y, *a_pos), mu_g, quality)
        grid = _anchor_grid(c.dequantize(y_anchor, mu_g, quality), a_pos, *y.shape[-2:])
        mu_g, index_rest = self._rest_parameters(nets, hyper, grid, r_pos, quality)
        y_rest = c.quantize(at(y, *r_pos), mu_g, quality)
        return [c.encode_symbols(y_anchor, index), c.encode_symbols(y_rest, index_rest)]

    def decode(self, nets: Nets, streams: list[bytes], hyper: torch.Tensor, quality: int,
               terminated: bool) -> torch.Tensor:
        """[anchor stream, rest stream] -> ŷ in fixed point."""
        c = self.conditional
        a_pos, r_pos = _halves(*hyper.shape[-2:])
        mu_g, index = c.parameters(at(hyper, *a_pos), quality)
        y_anchor = c.dequantize(c.decode_symbols(streams[0], index, terminated), mu_g, quality)
        grid = _anchor_grid(y_anchor, a_pos, *hyper.shape[-2:])
        mu_g, index = self._rest_parameters(nets, hyper, grid, r_pos, quality)
        y_hat = torch.zeros(1, index.shape[1], *hyper.shape[-2:], dtype=torch.long)
        y_hat[..., a_pos[0], a_pos[1]] = y_anchor[:, :, 0]
        y_rest = c.dequantize(c.decode_symbols(streams[1], index, terminated), mu_g, quality)
        y_hat[..., r_pos[0], r_pos[1]] = y_rest[:, :, 0]
        return y_hat
