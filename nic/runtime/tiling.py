"""Running the transforms tile by tile, so memory stays bounded for any image size.

Tiles overlap by more than the networks' receptive field and only their centres are kept, so
the result does not depend on the tiling: the exact synthesis, integer arithmetic, gives
bit-for-bit the pixels of a single pass (tested); the float one differs from a single pass by
float rounding only, and there are no seams to see.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from nic_decode.tiles import ONE_PASS, SYNTHESIS_MARGIN, SYNTHESIS_TILE, even_spans, spans  # shared with nic_decode

ANALYSIS_TILE = 768  # image pixels per analysis tile side
ANALYSIS_MARGIN = 32  # image pixels of context: g_a sees +-30 px through its four 5x5 stride-2 convs


@torch.inference_mode()
def analyse(g_a: nn.Module, rgb: np.ndarray, stride: int) -> torch.Tensor:
    """g_a of an (H, W, 3) uint8 image (sides multiples of `stride`) -> (1, M, H/stride, W/stride)."""
    h, w = rgb.shape[:2]
    rows = []
    for y0, y1, iy0, iy1 in spans(h, ANALYSIS_TILE, ANALYSIS_MARGIN):
        cols = []
        for x0, x1, ix0, ix1 in spans(w, ANALYSIS_TILE, ANALYSIS_MARGIN):
            patch = torch.from_numpy(np.array(rgb[iy0:iy1, ix0:ix1])).permute(2, 0, 1)[None].float().div_(255)
            y = g_a(patch)
            cy, cx = (y0 - iy0) // stride, (x0 - ix0) // stride
            cols.append(y[:, :, cy:cy + (y1 - y0) // stride, cx:cx + (x1 - x0) // stride])
        rows.append(torch.cat(cols, dim=3))
    return torch.cat(rows, dim=2)


Margins = tuple[int, int, int, int]  # input pixels of context above, left of, below, right of a tile's centre


def run_tiled(fn: Callable[[torch.Tensor, Margins], torch.Tensor], x: torch.Tensor, tile: int, margin: int,
              scale: int, even: bool = False) -> np.ndarray:
    """`fn` over overlapping tiles of x (1, C, H, W) -> (scale H, scale W, 3) uint8 pixels.

    fn(input tile (1, C, h, w), its margins) returns the (1, 3, ., .) uint8 pixels of the
    tile's centre only (`whole_tiles` adapts a function of whole tiles); `even`: tiles of one
    shape (see `even_spans`)."""
    _, _, h, w = x.shape
    out = np.empty((h * scale, w * scale, 3), dtype=np.uint8)
    tiles = even_spans if even else spans
    for y0, y1, iy0, iy1 in tiles(h, tile, margin):
        for x0, x1, ix0, ix1 in tiles(w, tile, margin):
            px = fn(x[:, :, iy0:iy1, ix0:ix1], (y0 - iy0, x0 - ix0, iy1 - y1, ix1 - x1))
            out[y0 * scale:y1 * scale, x0 * scale:x1 * scale] = px[0].permute(1, 2, 0).numpy()
    return out


def whole_tiles(fn: Callable[[torch.Tensor], torch.Tensor],
                scale: int) -> Callable[[torch.Tensor, Margins], torch.Tensor]:
    """A function of whole tiles (1, C, h, w) -> (1, 3, scale h, scale w), for `run_tiled`: it
    computes the margins' pixels too, then drops them."""
    def centre(x: torch.Tensor, margins: Margins) -> torch.Tensor:
        top, left, bottom, right = (m * scale for m in margins)
        px = fn(x)
        return px[:, :, top:px.shape[2] - bottom, left:px.shape[3] - right]
    return centre


def synthesise(synthesis: Callable[[torch.Tensor, Margins], torch.Tensor], y: torch.Tensor, stride: int,
               tile: int | None = None, one_pass: int | None = None, even: bool = False) -> np.ndarray:
    """A synthesis (see `run_tiled`) over a whole fixed-point latent (1, M, h, w) -> (stride h,
    stride w, 3) uint8 pixels, in tiles of `tile` pixels unless the image has at most
    `one_pass` pixels (defaults: those of the exact synthesis)."""
    _, _, h, w = y.shape
    tile, one_pass = tile or SYNTHESIS_TILE, one_pass if one_pass is not None else ONE_PASS
    # Tiles cost time (their margins are computed twice): use them only when memory needs them.
    tile = max(h, w) if h * w * stride**2 <= one_pass else max(1, tile // stride)
    return run_tiled(synthesis, y, tile, SYNTHESIS_MARGIN, stride, even)
