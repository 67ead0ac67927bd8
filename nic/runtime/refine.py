"""Spending encoder time instead of file size: per-image refinement of the latents (`--effort`).

g_a is an amortized guess of the best latent; for the image at hand the same decoder can do
better. Refinement starts from g_a's y and h_a's z and optimizes both for the coded quality's
rate + lambda * distortion, through the float twins of h_s and g_s (the weights file stores
them as integer networks; loading copies their values into the float layers). y's rate is the
model's entropy model's (`model.entropy.rate`, with float twins of the networks it runs), so
a context model is priced as its coder will spend. Rounding is relaxed by stochastic Gumbel
annealing (SGA, Yang, Bamler & Mandt 2020): each value is drawn to its floor or ceiling with
a probability that sharpens as the temperature falls, so the optimizer sees the discreteness
it will meet. The result is rounded and entropy coded by
the unchanged exact path, so the file format and the decoder do not change.

Large images refine tile by tile (in hyper-latent units, with one cell of fixed context),
so memory stays within the bound that compression keeps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from nic.runtime.fast import float_twin, precision


@dataclass(frozen=True)
class Schedule:
    """One effort level: `steps` Adam steps per tile on (y, z), the temperature falling
    geometrically from tau0 to tau1. With so few steps, half the Gumbel noise of SGA and a
    warm end of the annealing did best (`lab/scripts/refine_schedule.py`, docs/EFFORT.md)."""

    steps: int
    lr: float = 0.015  # in quantization bins of the gained latent (and of z)
    tau0: float = 0.8
    tau1: float = 0.15
    noise: float = 0.5  # scale of the Gumbel noise (1 is SGA's)


SCHEDULES: dict[int, Schedule] = {  # effort level (`quality.EFFORTS`) -> its schedule; 0 is g_a's latent
    1: Schedule(steps=6, lr=0.025),  # the cheap level: two thirds of 50 steps' saving, an eighth of the time
    2: Schedule(steps=50),
    3: Schedule(steps=120),
    4: Schedule(steps=500),
}
TILE = 12  # hyper-latent cells per refinement tile side (768 image pixels)
MARGIN = 1  # hyper-latent cells of fixed context around a tile: h_s and g_s reach less far
HALO = 2  # latent pixels beyond a tile whose reconstruction the tile's latents change


def _gumbel(shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
    return -torch.log(-torch.log(torch.rand(shape, generator=gen).clamp_(1e-10, 1.0)))


def soft_round(v: torch.Tensor, tau: float, noise: float, gen: torch.Generator) -> torch.Tensor:
    """SGA: floor(v) + a Gumbel-softmax draw between floor and ceiling (Yang et al. 2020, with
    their atanh logits: the nearer integer is likelier, certain when v is on it)."""
    f = torch.floor(v).detach()
    d = (v - f).clamp(1e-4, 1 - 1e-4)
    logit_down, logit_up = -torch.atanh(d) / tau, -torch.atanh(1 - d) / tau
    draw = noise * (_gumbel(v.shape, gen) - _gumbel(v.shape, gen))
    return f + torch.sigmoid((logit_up - logit_down + draw) / tau)


def _autocast(nets: _Nets) -> torch.autocast:
    """The float twins in bf16 where that ran the model's g_s faster (as decoding does)."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=nets.bf16)


class _Nets(NamedTuple):
    """Frozen float copies of what the loss goes through: gradients reach only the latents."""

    h_s: nn.Module
    g_s: nn.Module
    z_rate: Callable[[torch.Tensor], torch.Tensor]  # z -> bits of every value, under its float density
    # The model's entropy model priced with the float twins of its networks, (hyper, rounding,
    # gain, inv_gain) -> (bits of every symbol, ŷ): the rate the coder will really spend, a
    # context model's second pass included.
    y_rate: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    bf16: bool  # the twins under bf16 autocast


@dataclass
class _Tile:
    """Index ranges of one tile: its centre and its window (centre + context), in z cells."""

    zy: tuple[int, int, int, int]  # centre rows start/stop, window rows start/stop
    zx: tuple[int, int, int, int]


def _tiles(zh: int, zw: int) -> list[_Tile]:
    def spans(n: int) -> list[tuple[int, int, int, int]]:
        return [(a, min(a + TILE, n), max(0, a - MARGIN), min(n, a + TILE + MARGIN)) for a in range(0, n, TILE)]
    return [_Tile(r, c) for r in spans(zh) for c in spans(zw)]


def refine(model: nn.Module, image: np.ndarray, y: torch.Tensor, quality: int, schedule: Schedule,
           seed: int = 0, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, z) refined for `quality`: y ungained like g_a's, z as integer symbols.

    `image` is the padded (H, W, 3) uint8 image that y came from. The same inputs and seed
    give the same result on the same machine and thread count.
    """
    gen = torch.Generator().manual_seed(seed)
    gain, inv_gain = model.quality_gains(quality)
    lmbda = model.quality_lmbda(quality)
    stride = model.latent_stride
    cells = model.downsampling // stride  # latent pixels per z cell
    with torch.no_grad():
        y_g = (y * gain).contiguous()
        z = model.h_a(y).contiguous()
    x_all = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div_(255)
    tiles = _tiles(z.shape[2], z.shape[3])
    twins = {name: float_twin(model, name) for name in model.entropy.nets}
    nets = _Nets(float_twin(model, "h_s"), float_twin(model, "g_s"),
                 functools.partial(model.z_entropy.bits, float_twin(model, "z_density")),
                 functools.partial(model.entropy.rate, twins), precision(model, "g_s") == torch.bfloat16)
    with tqdm(total=schedule.steps * len(tiles), disable=not progress, unit="step",
              desc=f"refining q{quality}", leave=False, dynamic_ncols=True) as bar:
        for tile in tiles:
            _refine_tile(nets, x_all, y_g, z, tile, gain, inv_gain, lmbda, cells, stride, schedule, gen, bar)
    return y_g / gain, torch.round(z).long()


def _round_tile(mu_g: torch.Tensor, y_var: torch.Tensor, y_fixed: torch.Tensor, y_mask: torch.Tensor,
                rounding: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The rounded residual of a tile's gained y around the gained means `mu_g` that the
    entropy model predicts: the centre rounded by `rounding`, the fixed margin as it is coded."""
    return y_mask * rounding(y_mask * (y_var - mu_g)) + (1 - y_mask) * torch.round(y_fixed - mu_g.detach())


def _refine_tile(nets: _Nets, x_all: torch.Tensor, y_g: torch.Tensor, z: torch.Tensor, tile: _Tile,
                 gain: torch.Tensor, inv_gain: torch.Tensor, lmbda: float, cells: int, stride: int,
                 schedule: Schedule, gen: torch.Generator, bar: tqdm) -> None:
    """Optimize the tile's centre of y_g and z in place; the window's margin stays fixed."""
    zr0, zr1, wr0, wr1 = tile.zy
    zc0, zc1, wc0, wc1 = tile.zx
    zwin = (slice(None), slice(None), slice(wr0, wr1), slice(wc0, wc1))
    ywin = (slice(None), slice(None), slice(wr0 * cells, wr1 * cells), slice(wc0 * cells, wc1 * cells))
    z_fixed, y_fixed = z[zwin].clone(), y_g[ywin].clone()
    z_mask = torch.zeros_like(z_fixed)
    z_mask[..., zr0 - wr0:zr1 - wr0, zc0 - wc0:zc1 - wc0] = 1
    y_mask = torch.zeros_like(y_fixed)
    y_mask[..., (zr0 - wr0) * cells:(zr1 - wr0) * cells, (zc0 - wc0) * cells:(zc1 - wc0) * cells] = 1
    # Pixels whose reconstruction the centre's latents change: the centre and a halo.
    hy, hx = y_fixed.shape[2], y_fixed.shape[3]
    r0 = max(0, (zr0 - wr0) * cells - HALO) * stride
    r1 = min(hy, (zr1 - wr0) * cells + HALO) * stride
    c0 = max(0, (zc0 - wc0) * cells - HALO) * stride
    c1 = min(hx, (zc1 - wc0) * cells + HALO) * stride
    x = x_all[:, :, wr0 * cells * stride:wr1 * cells * stride, wc0 * cells * stride:wc1 * cells * stride]
    x = x[:, :, r0:r1, c0:c1]
    pixels = float((zr1 - zr0) * (zc1 - zc0) * (cells * stride) ** 2)
    dist_weight = lmbda * 255**2 / 3  # per pixel: the training loss's lambda * 255^2 * MSE

    y_var = y_fixed.clone().requires_grad_(True)
    z_var = z_fixed.clone().requires_grad_(True)
    opt = torch.optim.Adam([y_var, z_var], lr=schedule.lr)
    for step in range(schedule.steps):
        frac = step / max(1, schedule.steps - 1)
        tau = schedule.tau0 * (schedule.tau1 / schedule.tau0) ** frac
        zt = z_mask * soft_round(z_var, tau, schedule.noise, gen) + (1 - z_mask) * torch.round(z_fixed)
        with _autocast(nets):
            hyper = nets.h_s(zt).float()
        # Windows start at even latent rows and columns, so a context model's checkerboard in
        # the tile is the image's.
        rounding = functools.partial(soft_round, tau=tau, noise=schedule.noise, gen=gen)
        y_bits, y_hat = nets.y_rate(hyper, functools.partial(_round_tile, y_var=y_var, y_fixed=y_fixed,
                                                             y_mask=y_mask, rounding=rounding), gain, inv_gain)
        y_bits = (y_mask * y_bits).sum()
        z_bits = (z_mask * nets.z_rate(zt)).sum()
        with _autocast(nets):
            x_hat = nets.g_s(y_hat.contiguous(memory_format=torch.channels_last))
        err = (x_hat.float()[:, :, r0:r1, c0:c1].clamp(0, 1) - x).square().sum()
        loss = (y_bits + z_bits + dist_weight * err) / pixels
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.update()
    with torch.no_grad():
        y_g[ywin] = y_mask * y_var + (1 - y_mask) * y_fixed
        z[zwin] = z_mask * z_var + (1 - z_mask) * z_fixed
