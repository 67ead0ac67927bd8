"""Mean-scale hyperprior with a checkerboard context (He et al. 2021).

The latent is coded in two halves. The anchors ((row + column) even) are coded exactly as in
the hyperprior; then a context network reads the 12 decoded anchors within two rows and
columns of every other symbol (a 5x5 checkerboard-masked conv, written as a 1x1 conv over
the gathered neighbours) and corrects its (mu, log sigma):

    z -h_s-> hyper = (mu, log sigma) -> code the anchors of ŷ
    hyper, context(anchor neighbours) -param_net-> hyper + delta -> code the rest of ŷ

Both halves decode in one pass each, so decoding stays parallel (a serial context model
would decode symbol by symbol). Like h_s, the context sees the ungained latent, so one
network serves every quality; at coding time `context` and `param_net` run as exact integer
networks, so encoder and decoder pick the same table for every symbol on every machine.
The last layer of `param_net` starts at zero: a model started from hyperprior weights
begins as exactly that model and learns the context from there.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from nic.entropy import coder
from nic.errors import FormatError
from nic.models.hyperprior import MEAN_BITS, MeanScaleHyperprior
from nic.models.quantize import ste_round
from nic.runtime.integer import FRAC_BITS
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


class CheckerboardHyperprior(MeanScaleHyperprior):
    integer_nets = {**MeanScaleHyperprior.integer_nets, "context": FRAC_BITS, "param_net": FRAC_BITS}
    context_nets = ("context", "param_net")
    decode_cost = 1.2  # decode time per pixel / hyperprior's (one thread, 768x512: 0.24 s vs 0.20-0.21 s)

    def __init__(self, N: int = 96, M: int = 144, levels: int = 8,
                 lmbda_min: float = 0.0015, lmbda_max: float = 0.12, N_a: int = 0):
        super().__init__(N, M, levels, lmbda_min, lmbda_max, N_a)
        self.context = nn.Sequential(conv(len(OFFSETS) * M, M, 1, 1))
        self.param_net = nn.Sequential(conv(3 * M, 2 * M, 1, 1), nn.ReLU(), conv(2 * M, 2 * M, 1, 1))
        nn.init.zeros_(self.param_net[-1].weight)
        nn.init.zeros_(self.param_net[-1].bias)

    def context_delta(self, nets: tuple[nn.Module, nn.Module], hyper: torch.Tensor,
                      y_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(correction of h_s's (mu, log sigma), mask of the symbols it corrects): the second
        pass, from the anchors of the ungained ŷ. `nets` are (context, param_net): the model's
        own in training, their float twins when refinement prices the rate (`refine.py`)."""
        context, param_net = nets
        later = 1 - anchors(*y_hat.shape[-2:], device=y_hat.device).to(y_hat.dtype)
        delta = param_net(torch.cat([hyper, context(neighbours(y_hat * (1 - later)))], dim=1))
        return delta * later, later

    def training_parameters(self, y: torch.Tensor, z_hat: torch.Tensor, gain: torch.Tensor,
                            inv_gain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hyper = self.h_s(z_hat)
        mu_g = hyper[:, : y.shape[1]] * gain
        y_hat = (ste_round(y * gain - mu_g) + mu_g) * inv_gain  # what the decoder has, for the anchors
        delta, _ = self.context_delta((self.context, self.param_net), hyper, y_hat)
        return (hyper + delta).chunk(2, dim=1)

    # ---- coding ----

    def _rest_parameters(self, hyper: torch.Tensor, grid: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                         quality: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact (gained mean, table index), each (1, M, 1, n), of the n non-anchor symbols at
        (rows, cols), from the hyper output and the decoded anchors (`neighbours_at`'s grid).
        In chunks of positions, so the gathered neighbours of a large image stay under ~60 MB."""
        c, out = self.coding, []
        for r, k in zip(rows.split(CHUNK), cols.split(CHUNK), strict=True):
            h = at(hyper, r, k)
            delta = c["param_net"](torch.cat([h, c["context"](neighbours_at(grid, r, k))], dim=1))
            out.append(self._symbol_parameters(h + delta, quality))
        return tuple(torch.cat(parts, dim=-1) for parts in zip(*out, strict=True))

    def _halves(self, hyper: torch.Tensor, quality: int) -> tuple[Positions, Positions, tuple[torch.Tensor, ...]]:
        """The anchor and non-anchor positions of a latent, and the anchors' (gained mean, index)."""
        height, width = hyper.shape[-2:]
        anchor = anchors(height, width)
        a_pos, r_pos = anchor.nonzero(as_tuple=True), (~anchor).nonzero(as_tuple=True)
        return a_pos, r_pos, self._symbol_parameters(at(hyper, *a_pos), quality)

    def _anchor_grid(self, y_hat: torch.Tensor, a_pos: Positions, height: int, width: int) -> torch.Tensor:
        """Decoded anchors (1, M, 1, n) -> the (h + 4, w + 4, M) grid that `neighbours_at` reads."""
        grid = y_hat.new_zeros(height + 4, width + 4, y_hat.shape[1])
        grid[a_pos[0] + 2, a_pos[1] + 2] = y_hat[0, :, 0].T
        return grid

    @torch.inference_mode()
    def compress_latent(self, y: torch.Tensor, quality: int, z_sym: torch.Tensor | None = None) -> list[bytes]:
        """The latent y of a padded image -> [z stream, anchor stream, rest stream]."""
        if z_sym is None:
            z_sym = torch.round(self.h_a(y)).long()
        hyper = self.coding["h_s"](z_sym)
        gain, _ = self.quality_gains(quality)
        a_pos, r_pos, (mu_g, index) = self._halves(hyper, quality)
        y_anchor = torch.round(at(y, *a_pos) * gain - mu_g.float() / 2**MEAN_BITS).long()
        grid = self._anchor_grid(self._dequantize(y_anchor, mu_g, quality), a_pos, *y.shape[-2:])
        mu_g, index_rest = self._rest_parameters(hyper, grid, *r_pos, quality)
        y_rest = torch.round(at(y, *r_pos) * gain - mu_g.float() / 2**MEAN_BITS).long()
        return [self._encode_z(z_sym), coder.encode(y_anchor.numpy(), index.numpy(), self.coding["y"]),
                coder.encode(y_rest.numpy(), index_rest.numpy(), self.coding["y"])]

    @torch.inference_mode()
    def decompress_latent(self, streams: list[bytes], height: int, width: int, quality: int,
                          terminated: bool = True) -> torch.Tensor:
        """[z stream, anchor stream, rest stream] of a padded H x W image -> ŷ in fixed point."""
        if len(streams) != 3:
            raise FormatError(f"checkerboard model expects 3 latent sections, found {len(streams)}")
        hyper = self.coding["h_s"](self._decode_z(streams[0], height, width, terminated))
        a_pos, r_pos, (mu_g, index) = self._halves(hyper, quality)
        y_anchor = self._dequantize(self._decode_y(streams[1], index, terminated), mu_g, quality)
        grid = self._anchor_grid(y_anchor, a_pos, *hyper.shape[-2:])
        mu_g, index = self._rest_parameters(hyper, grid, *r_pos, quality)
        y_hat = torch.zeros(1, index.shape[1], *hyper.shape[-2:], dtype=torch.long)
        y_hat[..., a_pos[0], a_pos[1]] = y_anchor[:, :, 0]
        y_rest = self._dequantize(self._decode_y(streams[2], index, terminated), mu_g, quality)
        y_hat[..., r_pos[0], r_pos[1]] = y_rest[:, :, 0]
        return y_hat
