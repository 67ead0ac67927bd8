"""The fine layer above quality 50 (docs/FORMAT.md): a DCT residual added to the decoded image,
entropy-decoded and checked before any synthesis, its inverse DCT in integers.

nic/fine.py encodes it and decodes it with these functions, passing its own entropy decoder and
its torch inverse DCT (the same integers, on torch's threads). Every product and partial sum of
the inverse DCT is an integer below 2**53, so float64 matrix products give the exact result in
any summation order.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nic_decode import coder
from nic_decode.container import QUALITY_MAX, QUALITY_MIN
from nic_decode.errors import FormatError
from nic_decode.laplace import SCALE_LEVELS, laplace_tables

BLOCK = 16  # pixels per side of a region, whose 2 x 2 DCT blocks share one table
FREQ = 8  # DCT size
PER = BLOCK // FREQ  # DCT blocks per region side
BAND_PIXELS = 1 << 20  # about this many pixels per section
# base quality, luma step * 16, chroma step * 16, table of the index differences, their length
HEAD = struct.Struct("<BHHBI")
MAX_PRODUCT = 1 << 17  # |symbol x step x 16|: |DCT coefficients| <= 8 x 255, so no encoder makes more
# round(16384 cos(m pi / 16)), m = 0..8: the orthonormal DCT's entries times 2**15.
_COS = (16384, 16069, 15137, 13623, 11585, 9102, 6270, 3196, 0)
DCT_BITS = 15


def _cos(m: int) -> int:
    m %= 32
    return (-1 if 8 < m < 24 else 1) * _COS[min(m % 16, 16 - m % 16)]


# Row u: DCT basis function u, times 2**15 (row 0 is 1/sqrt(8) = cos(pi/4) / 2).
DCT_INT = np.array([[_cos(4 if u == 0 else (2 * x + 1) * u) for x in range(FREQ)] for u in range(FREQ)],
                   dtype=np.int64)
_DCT = DCT_INT.astype(np.float64)

Decode = Callable[[bytes, np.ndarray], np.ndarray]  # (stream, table index per symbol) -> symbols
Residual = Callable[[np.ndarray], np.ndarray]  # coefficients x 16 (3, H/8, W/8, 8, 8) -> (H, W, 3)


def bands(height: int, width: int, band_pixels: int = BAND_PIXELS) -> list[tuple[int, int]]:
    """Rows top..end of each section's band."""
    rows = max(BLOCK, band_pixels // max(width, 1) // BLOCK * BLOCK)
    return [(top, min(top + rows, height)) for top in range(0, height, rows)]


def table_of_each(index: np.ndarray) -> np.ndarray:
    """Table index per (plane, region) -> per coefficient (3, H/8, W/8, 8, 8)."""
    per_block = index.repeat(PER, axis=1).repeat(PER, axis=2)
    return np.broadcast_to(per_block[..., None, None], (*per_block.shape, FREQ, FREQ))


def side_index(d: np.ndarray) -> np.ndarray:
    """Differences from the left neighbour (first column: from above) -> region indices."""
    return np.cumsum(np.concatenate([np.cumsum(d[:, :, :1], axis=1), d[:, :, 1:]], axis=2), axis=2)


def head(section: bytes) -> tuple[int, int, int, int, int]:
    """A section's (base quality, luma step x 16, chroma step x 16, index table, index stream length)."""
    if len(section) < HEAD.size:
        raise FormatError("fine section is shorter than its header")
    quality, luma, chroma, side_table, side = HEAD.unpack_from(section)
    if not QUALITY_MIN <= quality <= QUALITY_MAX or not luma or not chroma:
        raise FormatError("fine section has an impossible base quality or step")
    if side_table >= SCALE_LEVELS:
        raise FormatError("fine section names an index table that does not exist")
    if HEAD.size + side > len(section):
        raise FormatError("fine section's index stream is longer than the section")
    return quality, luma, chroma, side_table, side


def base_quality(sections: list[bytes]) -> int:
    """The quality the latent of a file with these fine sections was coded at."""
    heads = {head(s)[:3] for s in sections}
    if len(heads) != 1:
        raise FormatError("fine sections disagree on their base quality or steps")
    return heads.pop()[0]


def plane_steps16(luma16: int, chroma16: int) -> np.ndarray:
    """Steps times 16 of the Y, Co and Cg planes, shaped to divide or scale (3, H/8, W/8, 8, 8)."""
    return np.array([luma16, chroma16, chroma16], dtype=np.int64)[:, None, None, None, None]


@dataclass
class Layer:
    """A file's fine layer, entropy-decoded and checked: done before any synthesis, so that a
    damaged layer costs no decoder work (docs/FORMAT.md, reading rules)."""

    base: int  # the quality the latent was coded at
    steps16: np.ndarray  # (3, 1, 1, 1, 1): luma, chroma, chroma steps times 16
    bands: list[tuple[int, int, np.ndarray, np.ndarray]]  # rows top..end, region tables + 1, symbols


def _decode(data: bytes, index: np.ndarray) -> np.ndarray:
    return coder.decode(data, index, laplace_tables())


def parse(sections: list[bytes], height: int, width: int, decode: Decode = _decode,
          band_pixels: int = BAND_PIXELS) -> Layer:
    """Decode the fine sections of a padded height x width image; FormatError if damaged."""
    if height % BLOCK or width % BLOCK:
        raise FormatError(f"a fine layer needs sides that are multiples of {BLOCK}")
    rows = bands(height, width, band_pixels)
    if len(sections) != len(rows):
        raise FormatError(f"image needs {len(rows)} fine sections, file has {len(sections)}")
    base = base_quality(sections)  # and every section's header agrees
    out = []
    for data, (top, end) in zip(sections, rows, strict=True):
        _, luma, chroma, side_table, side = head(data)
        grid = (3, (end - top) // BLOCK, width // BLOCK)
        d = decode(data[HEAD.size:HEAD.size + side], np.full(grid, side_table))
        index = side_index(d.reshape(grid))
        if index.min() < 0 or index.max() > SCALE_LEVELS:
            raise FormatError("fine section has a table index outside its tables")
        each = table_of_each(index.astype(np.uint8))
        values = decode(data[HEAD.size + side:], each[each > 0].astype(np.int64) - 1)
        if values.size and np.abs(values).max() * max(luma, chroma) > MAX_PRODUCT:
            raise FormatError("fine section holds a value no encoder makes")
        out.append((top, end, index.astype(np.uint8), values.astype(np.int32)))
    return Layer(base, plane_steps16(luma, chroma), out)


def _residual(coefficients16: np.ndarray) -> np.ndarray:
    """Quantized YCoCg DCT coefficients times 16 (3, H/8, W/8, 8, 8) -> RGB residual (H, W, 3)."""
    c, hb, wb = coefficients16.shape[:3]
    x = coefficients16.astype(np.float64).reshape(-1, FREQ) @ _DCT
    x = (x.reshape(-1, FREQ, FREQ).transpose(0, 2, 1).reshape(-1, FREQ) @ _DCT).reshape(c, hb, wb, FREQ, FREQ)
    y, co, cg = x
    rgb = np.stack([y + co - cg, y + cg, y - co - cg], axis=-1).astype(np.int64)
    shift = 4 + 2 * DCT_BITS
    rgb = (rgb + (1 << (shift - 1))) >> shift
    return rgb.transpose(0, 3, 1, 2, 4).reshape(hb * FREQ, wb * FREQ, 3)


def apply(layer: Layer, base: np.ndarray, residual: Residual = _residual) -> np.ndarray:
    """Decoded `base` (H, W, 3 uint8, padded) plus the fine layer: the finished pixels."""
    out = np.empty_like(base)
    for top, end, index, values in layer.bands:
        each = table_of_each(index)
        sym = np.zeros(each.shape, dtype=np.int64)
        sym[each > 0] = values
        out[top:end] = np.clip(base[top:end] + residual(sym * layer.steps16), 0, 255)
    return out
