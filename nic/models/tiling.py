"""Running the transforms tile by tile, so memory stays bounded for any image size.

Tiles overlap by more than the networks' receptive field and only their centres are kept, so
the result does not depend on the tiling: synthesis, being exact integer arithmetic, gives
bit-for-bit the pixels of a single pass (tested), and there are no seams to see.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

ANALYSIS_TILE = 768  # image pixels per analysis tile side
ANALYSIS_MARGIN = 64  # image pixels of context: g_a sees +-30 px through its four 5x5 stride-2 convs
SYNTHESIS_TILE = 512  # image pixels per synthesis tile side
SYNTHESIS_MARGIN = 3  # latent pixels of context: every g_s here reaches under 2 latent pixels
ONE_PASS = 768 * 768  # images up to this many pixels are synthesised in one pass


def spans(size: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    """(start, stop) of each tile's kept centre and (start, stop) of its input with margins."""
    out = []
    for a in range(0, size, tile):
        b = min(a + tile, size)
        out.append((a, b, max(0, a - margin), min(size, b + margin)))
    return out


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


def run_tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, margin: int,
              scale: int) -> np.ndarray:
    """`fn` (an input tile (1, C, h, w) -> (1, 3, scale h, scale w) uint8) over overlapping tiles
    of x (1, C, H, W), keeping each tile's centre -> (scale H, scale W, 3) uint8 pixels."""
    _, _, h, w = x.shape
    out = np.empty((h * scale, w * scale, 3), dtype=np.uint8)
    for y0, y1, iy0, iy1 in spans(h, tile, margin):
        for x0, x1, ix0, ix1 in spans(w, tile, margin):
            px = fn(x[:, :, iy0:iy1, ix0:ix1])[0].permute(1, 2, 0).numpy()
            cy, cx = (y0 - iy0) * scale, (x0 - ix0) * scale
            out[y0 * scale:y1 * scale, x0 * scale:x1 * scale] = \
                px[cy:cy + (y1 - y0) * scale, cx:cx + (x1 - x0) * scale]
    return out


def synthesise(synthesis: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor, stride: int) -> np.ndarray:
    """A model's exact synthesis (latent tile -> (1, 3, h, w) uint8) over a whole fixed-point
    latent (1, M, h, w) -> (stride h, stride w, 3) uint8 pixels."""
    _, _, h, w = y.shape
    # Tiles cost time (their margins are computed twice): use them only when memory needs them.
    tile = max(h, w) if h * w * stride**2 <= ONE_PASS else max(1, SYNTHESIS_TILE // stride)
    return run_tiled(synthesis, y, tile, SYNTHESIS_MARGIN, stride)
