"""The fine layer: the part of the image the model's decoder misses, coded as a residual.

The learned transforms saturate near 36 dB (docs/MODELS.md, the fine layer), and their top
gain levels buy little: on training patches the default's quality 50 plus a coded residual
beats its own qualities 60 to 100 at every rate. So above `FINE_FROM` a quality codes the
latent at quality `FINE_FROM` and adds a fine layer: the residual x - x̂ of the decoded
image, in YCoCg (most of it is luma), through an 8 x 8 DCT (on training patches 7.6% fewer
bits than coding the pixels), quantized with a dead zone and coded under discrete Laplace
tables. Each 16 x 16 region of each plane picks one table and sends the choice as side
information (forward adaptation: the tables never depend on decoded pixels, which the fast
decoder only reproduces within a tolerance); a region that rounds to zero costs only its
index. The inverse DCT runs in integers, so the layer decodes the same on every machine.

Bytes (docs/FORMAT.md): the layer is cut into bands of rows, one section per band, so memory
stays bounded on large images. Each section is `_HEAD` (base quality, luma and chroma steps
in 1/16, length of the index stream), the table-index stream, then the symbol stream. The
format's constants and the decoding steps are nic_decode.fine's; the encoder and the torch
inverse DCT (on torch's threads, shared with the synthesis) are here.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from nic.entropy import coder
from nic.entropy.laplace import SCALE_LEVELS, laplace_tables
from nic.quality import QUALITY_MAX
from nic_decode import fine as shared
from nic_decode.fine import BAND_PIXELS, BLOCK, FREQ, Layer, bands, base_quality
from nic_decode.fine import DCT_BITS as _DCT_BITS
from nic_decode.fine import DCT_INT as _DCT_INT
from nic_decode.fine import HEAD as _HEAD
from nic_decode.fine import PER as _PER
from nic_decode.fine import plane_steps16 as _plane_steps16
from nic_decode.fine import table_of_each as _table_of_each

STEP_FIRST, STEP_TOP = 32.0, 7.0  # luma step just above FINE_FROM and at quality 100
CHROMA = 1.5  # chroma step / luma step
DEAD_ZONE = 0.2  # of a step: values within 0.7 steps of zero round to zero
_COST_RANGE = 64  # the encoder prices |symbols| up to this when it picks a table
_DCT = _DCT_INT / float(1 << _DCT_BITS)  # the orthonormal DCT, for the encoder's forward transform
__all__ = ["BAND_PIXELS", "BLOCK", "FREQ", "Layer", "Plan", "apply", "base_quality", "decode", "encode", "parse",
           "plan"]


@dataclass(frozen=True)
class Plan:
    base: int  # the quality the latent is coded at
    step: float  # luma quantizer step, in 8-bit levels


def plan(quality: int, fine_from: int | None) -> Plan | None:
    """The fine layer a quality gets from a model that starts one above `fine_from`, or None."""
    if fine_from is None or quality <= fine_from:
        return None
    t = (quality - fine_from) / (QUALITY_MAX - fine_from)
    return Plan(fine_from, STEP_FIRST * (STEP_TOP / STEP_FIRST) ** t)


def _fwd(r: np.ndarray) -> np.ndarray:
    """RGB residual (..., 3) -> YCoCg planes (3, ...)."""
    red, green, blue = r[..., 0], r[..., 1], r[..., 2]
    return np.stack([(red + 2 * green + blue) / 4, (red - blue) / 2, (2 * green - red - blue) / 4])


def _inv(c: torch.Tensor) -> torch.Tensor:
    """YCoCg planes (3, ...) -> RGB (..., 3)."""
    y, co, cg = c
    return torch.stack([y + co - cg, y + cg, y - co - cg], dim=-1)



def _to_blocks(planes: np.ndarray) -> np.ndarray:
    """(3, H, W) -> (3, H/8, W/8, 8, 8)."""
    c, h, w = planes.shape
    return planes.reshape(c, h // FREQ, FREQ, w // FREQ, FREQ).transpose(0, 1, 3, 2, 4)


def _residual(coefficients16: np.ndarray) -> np.ndarray:
    """Quantized YCoCg DCT coefficients times 16 (3, H/8, W/8, 8, 8), |each| <= 2**17 -> the
    RGB residual (H, W, 3), rounded. Every product and partial sum is an integer below 2**53
    (2**17 x 2**14 x 8 after one pass, x 2**14 x 8 after the second, three planes added), so
    float64 holds it exactly in any order of summation: the result is exact and the same on
    every machine, at the speed of one large matrix product per pass (torch's, which shares
    its threads with the synthesis; numpy's BLAS fights them for the cores)."""
    c, hb, wb = coefficients16.shape[:3]
    dct = torch.from_numpy(_DCT_INT).double()
    x = torch.from_numpy(coefficients16).double().reshape(-1, FREQ) @ dct  # C D, per block
    x = (x.view(-1, FREQ, FREQ).transpose(1, 2).reshape(-1, FREQ) @ dct).view(c, hb, wb, FREQ, FREQ)
    rgb = _inv(x).long()  # (D^T C D)^T x 16 x 2**30: (H/8, W/8, v, u, 3)
    shift = 4 + 2 * _DCT_BITS
    rgb.add_(1 << (shift - 1)).bitwise_right_shift_(shift)
    return rgb.permute(0, 3, 1, 2, 4).reshape(hb * FREQ, wb * FREQ, 3).numpy()


def _forward(planes: np.ndarray) -> np.ndarray:
    """YCoCg planes (3, H, W) -> their 8 x 8 DCT coefficients (3, H/8, W/8, 8, 8), in float."""
    dct = torch.from_numpy(_DCT)
    return (dct @ torch.from_numpy(_to_blocks(planes)) @ dct.T).numpy()


@functools.cache
def _costs() -> np.ndarray:
    """Bits of each |symbol| 0.._COST_RANGE (sign included) under each table: (range+1, K)."""
    t = laplace_tables()
    v = np.arange(_COST_RANGE + 1)
    out = np.empty((len(v), SCALE_LEVELS))
    for k in range(SCALE_LEVELS):
        p = t.pmf(k)
        inside = v < -t.offsets[k] + 1
        escape = -math.log2(p[-1]) + 7 + np.log2(np.maximum(v, 1))
        bits = np.where(inside, -np.log2(p[np.minimum(v - t.offsets[k], len(p) - 2)]), escape)
        out[:, k] = bits + (v > 0)
    return out


def _histograms(symbols: np.ndarray, groups: np.ndarray, count: int) -> np.ndarray:
    """Counts of min(|symbol|, _COST_RANGE) per group: (count, _COST_RANGE + 1)."""
    n = _COST_RANGE + 1
    v = np.minimum(np.abs(symbols), _COST_RANGE).ravel()
    return np.bincount(groups.ravel() * n + v, minlength=count * n).reshape(count, n)


def _pick_tables(sym: np.ndarray) -> np.ndarray:
    """Table index per (plane, region): 0 where all its symbols are zero (nothing is coded),
    else 1 + the table that codes them in the fewest bits."""
    c, hb, wb = sym.shape[:3]
    rh, rw = hb // _PER, wb // _PER
    region = (np.arange(c)[:, None, None] * rh + np.arange(hb)[None, :, None] // _PER) * rw \
        + np.arange(wb)[None, None, :] // _PER
    hist = _histograms(sym, np.broadcast_to(region[..., None, None], sym.shape), c * rh * rw)
    best = 1 + np.argmin(hist @ _costs(), axis=1)
    return np.where(hist[:, 1:].any(axis=1), best, 0).reshape(c, rh, rw)


def _cheapest(symbols: np.ndarray) -> int:
    """The table that codes these symbols in the fewest bits."""
    return int(np.argmin(_histograms(symbols, np.zeros(symbols.shape, dtype=np.int64), 1) @ _costs()))


def _side_symbols(index: np.ndarray) -> np.ndarray:
    """Region indices -> differences from the left neighbour (the first column: from above)."""
    d = np.diff(index, axis=2, prepend=0)
    d[:, :, 0] = np.diff(index[:, :, 0], axis=1, prepend=0)
    return d


@functools.cache
def _dists() -> coder.Categoricals:
    return coder.Categoricals(laplace_tables())


def _encode_band(x: np.ndarray, base: np.ndarray, p: Plan, steps16: tuple[int, int]) -> bytes:
    a = _forward(_fwd(x.astype(np.float64) - base)) / (_plane_steps16(*steps16) / 16)
    sym = (np.sign(a) * np.maximum(np.floor(np.abs(a) + 0.5 - DEAD_ZONE), 0)).astype(np.int64)
    index = _pick_tables(sym)
    each = _table_of_each(index)
    coded = each > 0
    d = _side_symbols(index)
    side_table = _cheapest(d)
    side = coder.encode(d, np.full(d.shape, side_table), _dists())
    main = coder.encode(sym[coded], each[coded] - 1, _dists())
    return _HEAD.pack(p.base, *steps16, side_table, len(side)) + side + main


def encode(image: np.ndarray, base: np.ndarray, p: Plan) -> list[bytes]:
    """The fine layer's sections: what brings decoded `base` (H, W, 3 uint8, sides multiples
    of 16) toward `image`."""
    steps16 = (round(p.step * 16), round(p.step * CHROMA * 16))
    return [_encode_band(image[top:end], base[top:end], p, steps16)
            for top, end in bands(*image.shape[:2], BAND_PIXELS)]


def _decode(data: bytes, index: np.ndarray) -> np.ndarray:
    return coder.decode(data, index, _dists())


def parse(sections: list[bytes], height: int, width: int) -> Layer:
    """Decode the fine sections of a padded height x width image; FormatError if damaged."""
    return shared.parse(sections, height, width, _decode, BAND_PIXELS)


def apply(layer: Layer, base: np.ndarray) -> np.ndarray:
    """Decoded `base` (H, W, 3 uint8, padded) plus the fine layer: the finished pixels."""
    return shared.apply(layer, base, _residual)


def decode(sections: list[bytes], base: np.ndarray) -> np.ndarray:
    """`parse` and `apply` in one: for callers that already hold the decoded base."""
    return apply(parse(sections, *base.shape[:2]), base)
