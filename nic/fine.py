"""The fine layer: the part of the image the model's decoder misses, coded as pixels.

The learned transforms saturate near 36 dB (README, "What limits the top"), and their top
gain levels buy little: on training patches the default's quality 50 plus a coded residual
beats its own qualities 60 to 100 at every rate. So above `FINE_FROM` a quality codes the
latent at quality `FINE_FROM` and adds a fine layer: the residual x - x̂ of the decoded
image, in YCoCg (most of it is luma), quantized with a dead zone and coded under discrete
Laplace tables whose scale is chosen per 16 x 16 block and sent as side information
(forward adaptation: the tables never depend on decoded pixels, which the fast decoder only
reproduces within a tolerance). A block whose symbols are all zero costs only its index.

Bytes (docs/FORMAT.md): the layer is cut into bands of rows, one section per band, so memory
stays bounded on large images. Each section is `_HEAD` (base quality, luma and chroma steps
in 1/16, length of the index stream), the block-index stream, then the symbol stream.
"""

from __future__ import annotations

import functools
import math
import struct
from dataclasses import dataclass

import numpy as np

from nic.entropy import coder
from nic.entropy.laplace import SCALE_LEVELS, laplace_tables
from nic.errors import FormatError
from nic.quality import QUALITY_MAX, QUALITY_MIN

FINE_FROM = 50  # qualities above this carry a fine layer on the latent of this quality
STEP_FIRST, STEP_TOP = 32.0, 5.0  # luma step just above FINE_FROM and at quality 100
CHROMA = 1.5  # chroma step / luma step
DEAD_ZONE = 0.2  # of a step: values within 0.7 steps of zero round to zero
BLOCK = 16  # pixels per side of a block that shares one table
BAND_PIXELS = 1 << 20  # about this many pixels per section
_HEAD = struct.Struct("<BHHI")  # base quality, luma step * 16, chroma step * 16, index stream length
_SIDE_TABLE = 22  # the index differences' table (scale 3.5 indices)
_COST_RANGE = 64  # the encoder prices |symbols| up to this when it picks a block's table


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


def _inv(c: np.ndarray) -> np.ndarray:
    """YCoCg planes (3, ...) -> RGB (..., 3)."""
    y, co, cg = c
    return np.stack([y + co - cg, y + cg, y - co - cg], axis=-1)


def _bands(height: int, width: int) -> list[tuple[int, int]]:
    rows = max(BLOCK, BAND_PIXELS // max(width, 1) // BLOCK * BLOCK)
    return [(top, min(top + rows, height)) for top in range(0, height, rows)]


def _blocks(a: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (C, H/B, W/B, B*B), zero-padded to whole blocks."""
    c, h, w = a.shape
    bh, bw = -(-h // BLOCK), -(-w // BLOCK)
    a = np.pad(a, ((0, 0), (0, bh * BLOCK - h), (0, bw * BLOCK - w)))
    return a.reshape(c, bh, BLOCK, bw, BLOCK).transpose(0, 1, 3, 2, 4).reshape(c, bh, bw, BLOCK * BLOCK)


def _per_pixel(index: np.ndarray, h: int, w: int) -> np.ndarray:
    """Block indices (C, H/B, W/B) -> per-pixel (C, h, w)."""
    return index.repeat(BLOCK, axis=1).repeat(BLOCK, axis=2)[:, :h, :w]


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


def _pick_tables(sym: np.ndarray) -> np.ndarray:
    """Block index per (channel, block): 0 for an all-zero block (nothing coded), else 1 + the
    table that codes its symbols in the fewest bits."""
    blocks = np.minimum(np.abs(_blocks(sym)), _COST_RANGE)
    flat = blocks.reshape(-1, blocks.shape[-1])
    n = _COST_RANGE + 1
    hist = np.bincount((np.arange(len(flat))[:, None] * n + flat).ravel(), minlength=len(flat) * n)
    best = 1 + np.argmin(hist.reshape(-1, n) @ _costs(), axis=1)
    return np.where(flat.any(axis=1), best, 0).reshape(blocks.shape[:3])


def _side_symbols(index: np.ndarray) -> np.ndarray:
    """Block indices -> differences from the left neighbour (the first column: from above)."""
    d = np.diff(index, axis=2, prepend=0)
    d[:, :, 0] = np.diff(index[:, :, 0], axis=1, prepend=0)
    return d


def _side_index(d: np.ndarray) -> np.ndarray:
    return np.cumsum(np.concatenate([np.cumsum(d[:, :, :1], axis=1), d[:, :, 1:]], axis=2), axis=2)


def _encode_band(x: np.ndarray, base: np.ndarray, p: Plan, steps16: tuple[int, int]) -> bytes:
    steps = np.array([steps16[0], steps16[1], steps16[1]], dtype=np.float64)[:, None, None] / 16
    a = _fwd(x.astype(np.float64) - base) / steps
    sym = (np.sign(a) * np.maximum(np.floor(np.abs(a) + 0.5 - DEAD_ZONE), 0)).astype(np.int64)
    index = _pick_tables(sym)
    pixel = _per_pixel(index, *sym.shape[1:])
    coded = pixel > 0
    side = coder.encode(_side_symbols(index), np.full(index.shape, _SIDE_TABLE), _dists())
    main = coder.encode(sym[coded], pixel[coded] - 1, _dists())
    return _HEAD.pack(p.base, *steps16, len(side)) + side + main


@functools.cache
def _dists() -> coder.Categoricals:
    return coder.Categoricals(laplace_tables())


def encode(image: np.ndarray, base: np.ndarray, p: Plan) -> list[bytes]:
    """The fine layer's sections: what brings decoded `base` (H, W, 3 uint8) toward `image`."""
    steps16 = (round(p.step * 16), round(p.step * CHROMA * 16))
    return [_encode_band(image[top:end], base[top:end], p, steps16) for top, end in _bands(*image.shape[:2])]


def base_quality(sections: list[bytes]) -> int:
    """The quality the latent of a file with these fine sections was coded at."""
    heads = {_head(s)[:3] for s in sections}
    if len(heads) != 1:
        raise FormatError("fine sections disagree on their base quality or steps")
    return heads.pop()[0]


def _head(section: bytes) -> tuple[int, int, int, int]:
    if len(section) < _HEAD.size:
        raise FormatError("fine section is shorter than its header")
    quality, luma, chroma, side = _HEAD.unpack_from(section)
    if not QUALITY_MIN <= quality <= QUALITY_MAX or not luma or not chroma:
        raise FormatError("fine section has an impossible base quality or step")
    if _HEAD.size + side > len(section):
        raise FormatError("fine section's index stream is longer than the section")
    return quality, luma, chroma, side


_MAX_SYMBOL = 4096  # |Y|, |Co|, |Cg| <= 255 and steps >= 1/16: no encoder makes a larger symbol


@dataclass
class Layer:
    """A file's fine layer, entropy-decoded and checked: done before any synthesis, so that a
    damaged layer costs no decoder work (docs/FORMAT.md, reading rules)."""

    steps: np.ndarray  # (3, 1, 1): luma, chroma, chroma
    bands: list[tuple[int, int, np.ndarray, np.ndarray]]  # rows top..end, per-pixel table + 1, symbols


def parse(sections: list[bytes], height: int, width: int) -> Layer:
    """Decode the fine sections of a padded height x width image; FormatError if damaged."""
    bands = _bands(height, width)
    if len(sections) != len(bands):
        raise FormatError(f"image needs {len(bands)} fine sections, file has {len(sections)}")
    base_quality(sections)  # every section's header agrees
    out = []
    for data, (top, end) in zip(sections, bands, strict=True):
        _, luma, chroma, side = _head(data)
        grid = (3, -(-(end - top) // BLOCK), -(-width // BLOCK))
        index = _side_index(coder.decode(data[_HEAD.size:_HEAD.size + side], np.full(grid, _SIDE_TABLE),
                                         _dists()).reshape(grid))
        if index.min() < 0 or index.max() > SCALE_LEVELS:
            raise FormatError("fine section has a block index outside its tables")
        pixel = _per_pixel(index, end - top, width).astype(np.uint8)
        values = coder.decode(data[_HEAD.size + side:], pixel[pixel > 0].astype(np.int64) - 1, _dists())
        if values.size and np.abs(values).max() > _MAX_SYMBOL:
            raise FormatError("fine section holds a value no encoder makes")
        out.append((top, end, pixel, values.astype(np.int16)))
    return Layer(np.array([luma, chroma, chroma], dtype=np.float64)[:, None, None] / 16, out)


def apply(layer: Layer, base: np.ndarray) -> np.ndarray:
    """Decoded `base` (H, W, 3 uint8, padded) plus the fine layer: the finished pixels."""
    out = np.empty_like(base)
    for top, end, pixel, values in layer.bands:
        sym = np.zeros(pixel.shape)
        sym[pixel > 0] = values
        out[top:end] = np.clip(np.rint(base[top:end] + _inv(sym * layer.steps)), 0, 255)
    return out


def decode(sections: list[bytes], base: np.ndarray) -> np.ndarray:
    """`parse` and `apply` in one: for callers that already hold the decoded base."""
    return apply(parse(sections, *base.shape[:2]), base)
