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


def _spans(size: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
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
    for y0, y1, iy0, iy1 in _spans(h, ANALYSIS_TILE, ANALYSIS_MARGIN):
        cols = []
        for x0, x1, ix0, ix1 in _spans(w, ANALYSIS_TILE, ANALYSIS_MARGIN):
            patch = torch.from_numpy(np.array(rgb[iy0:iy1, ix0:ix1])).permute(2, 0, 1)[None].float().div_(255)
            y = g_a(patch)
            cy, cx = (y0 - iy0) // stride, (x0 - ix0) // stride
            cols.append(y[:, :, cy:cy + (y1 - y0) // stride, cx:cx + (x1 - x0) // stride])
        rows.append(torch.cat(cols, dim=3))
    return torch.cat(rows, dim=2)


def synthesise(synthesis: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor, stride: int) -> np.ndarray:
    """A model's exact synthesis (latent tile -> (1, 3, h, w) uint8) over a whole fixed-point
    latent (1, M, h, w) -> (stride h, stride w, 3) uint8 pixels."""
    _, _, h, w = y.shape
    out = np.empty((h * stride, w * stride, 3), dtype=np.uint8)
    # Tiles cost time (their margins are computed twice): use them only when memory needs them.
    tile = max(h, w) if h * w * stride**2 <= ONE_PASS else max(1, SYNTHESIS_TILE // stride)
    for y0, y1, iy0, iy1 in _spans(h, tile, SYNTHESIS_MARGIN):
        for x0, x1, ix0, ix1 in _spans(w, tile, SYNTHESIS_MARGIN):
            px = synthesis(y[:, :, iy0:iy1, ix0:ix1])[0].permute(1, 2, 0).numpy()
            cy, cx = (y0 - iy0) * stride, (x0 - ix0) * stride
            out[y0 * stride:y1 * stride, x0 * stride:x1 * stride] = \
                px[cy:cy + (y1 - y0) * stride, cx:cx + (x1 - x0) * stride]
    return out
