"""The exact synthesis g_s, in the tiles of nic's `--exact` (nic_decode/tiles.py)."""

from __future__ import annotations

import numpy as np

from nic_decode.integer import FRAC_BITS, IntegerNet, to_pixels
from nic_decode.tiles import ONE_PASS, SYNTHESIS_MARGIN, SYNTHESIS_TILE, spans

G_S = ("deconv", "igdn", "deconv", "igdn", "deconv", "igdn", "deconv")
STRIDE = 16  # image pixels per latent pixel


class Synthesis:
    """g_s of a hyperprior or checkerboard model, from its weights' coding tensors."""

    def __init__(self, coding: dict[str, np.ndarray]):
        own = {k.removeprefix("g_s."): v for k, v in coding.items() if k.startswith("g_s.")}
        self.g_s = IntegerNet(G_S, own, FRAC_BITS)

    def __call__(self, y_hat: np.ndarray) -> np.ndarray:
        """Fixed-point ŷ (M, h, w) -> (16 h, 16 w, 3) uint8 pixels."""
        _, h, w = y_hat.shape
        tile = max(h, w) if h * w * STRIDE**2 <= ONE_PASS else max(1, SYNTHESIS_TILE // STRIDE)
        latent = y_hat.transpose(1, 2, 0)
        out = np.empty((h * STRIDE, w * STRIDE, 3), dtype=np.uint8)
        for y0, y1, iy0, iy1 in spans(h, tile, SYNTHESIS_MARGIN):
            for x0, x1, ix0, ix1 in spans(w, tile, SYNTHESIS_MARGIN):
                px = to_pixels(self.g_s(latent[iy0:iy1, ix0:ix1]))
                top, left = (y0 - iy0) * STRIDE, (x0 - ix0) * STRIDE
                out[y0 * STRIDE:y1 * STRIDE, x0 * STRIDE:x1 * STRIDE] = \
                    px[top:top + (y1 - y0) * STRIDE, left:left + (x1 - x0) * STRIDE]
        return out
