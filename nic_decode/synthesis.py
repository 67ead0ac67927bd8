"""The exact synthesis g_s, in the tiles of nic's `--exact` (nic_decode/tiles.py)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nic_decode.integer import FRAC_BITS, IntegerNet, to_pixels
from nic_decode.tiles import ONE_PASS, SYNTHESIS_MARGIN, SYNTHESIS_TILE, spans

G_S = ("deconv", "igdn", "deconv", "igdn", "deconv", "igdn", "deconv")  # hyperprior, checkerboard, factorized
STRIDE = 16  # image pixels per latent pixel of G_S


def conv_ae_g_s(config: Mapping) -> tuple[tuple[str, ...], int]:
    """conv-ae's g_s layers and stride (nic/models/conv_ae.py): a conv, ReLU and 2x upsampling
    per pooling stage of its encoder (`widths`, two by default), then the output conv, whose
    sigmoid nic applies by integer thresholds."""
    stages = len(config.get("widths") or (0, 0))
    return ("conv3", "relu", "upsample") * stages + ("conv3",), 2**stages


class Synthesis:
    """g_s from its weights' coding tensors: `spec` and `stride` as above; `thresholds`, where
    g_s ends in a sigmoid, are the fixed-point logits at which round(255 sigmoid) steps up."""

    def __init__(self, coding: dict[str, np.ndarray], spec: tuple[str, ...] = G_S, stride: int = STRIDE,
                 thresholds: np.ndarray | None = None):
        own = {k.removeprefix("g_s."): v for k, v in coding.items() if k.startswith("g_s.")}
        self.g_s = IntegerNet(spec, own, FRAC_BITS)
        self.stride = stride
        self.thresholds = None if thresholds is None else np.asarray(thresholds, dtype=np.int64)

    def _pixels(self, x: np.ndarray) -> np.ndarray:
        """g_s's fixed-point output -> uint8, as nic's `to_pixels` or `sigmoid_pixels`."""
        if self.thresholds is None:
            return to_pixels(x)
        return np.searchsorted(self.thresholds, x.astype(np.int64), side="right").astype(np.uint8)

    def __call__(self, y_hat: np.ndarray) -> np.ndarray:
        """Fixed-point ŷ (M, h, w) -> (stride h, stride w, 3) uint8 pixels."""
        _, h, w = y_hat.shape
        s = self.stride
        tile = max(h, w) if h * w * s**2 <= ONE_PASS else max(1, SYNTHESIS_TILE // s)
        latent = y_hat.transpose(1, 2, 0)
        out = np.empty((h * s, w * s, 3), dtype=np.uint8)
        for y0, y1, iy0, iy1 in spans(h, tile, SYNTHESIS_MARGIN):
            for x0, x1, ix0, ix1 in spans(w, tile, SYNTHESIS_MARGIN):
                px = self._pixels(self.g_s(latent[iy0:iy1, ix0:ix1]))
                top, left = (y0 - iy0) * s, (x0 - ix0) * s
                out[y0 * s:y1 * s, x0 * s:x1 * s] = px[top:top + (y1 - y0) * s, left:left + (x1 - x0) * s]
        return out
