"""comcnn files (ComCNN -> JPEG -> RecCNN, nic/models/comcnn.py): the payload is a JPEG of the
half-size compact image; RecCNN restores the image from its bicubic 2x upsampling (and, where
the weights read it, a plane of JPEG quality / 100), predicting the residual.

As in nic, float only: RecCNN runs in float32 (the bundle's rec.onnx, in onnxruntime), the same
on one machine and within a level across machines; no symbol depends on it, so a file is never
garbled, but `exact` is refused as nic refuses it. The JPEG decoder is Pillow, which the base
wheel leaves out (it is only for these files): `pip install 'nic-decode[comcnn]'` adds it.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from nic_decode.errors import FormatError, NicError
from nic_decode.fast import OnnxGraph
from nic_decode.tiles import REC_MARGIN, REC_TILE, spans

EXACT_REFUSED = ("model 'comcnn' decodes in float only: its pixels are not bit-identical across machines, "
                 "so --exact is not available")
NO_PILLOW = "comcnn files hold a JPEG, and decoding it needs Pillow: pip install 'nic-decode[comcnn]'"
DOWNSAMPLING = 2  # padded sides are even: the compact image is half of each
_JPEG_END = b"\xff\xd9"
_A = -0.75  # the bicubic kernel's parameter in torch (and nic's training)


def compact_image(streams: list[bytes], height: int, width: int) -> np.ndarray:
    """The (height/2, width/2, 3) uint8 compact image in a padded height x width image's JPEG
    section, checked as nic checks it (nic reads it with this)."""
    if len(streams) != 1:
        raise FormatError(f"comcnn model expects 1 JPEG section, found {len(streams)}")
    if not streams[0].endswith(_JPEG_END):  # a JPEG cut short, or with bytes after its end
        raise FormatError("JPEG section is truncated or has data after its end")
    try:
        from PIL import Image
    except ImportError:
        raise NicError(NO_PILLOW) from None
    try:
        with Image.open(io.BytesIO(streams[0])) as img:
            if img.format != "JPEG" or img.size != (width // 2, height // 2):
                raise FormatError("JPEG section does not match the image size")
            return np.asarray(img.convert("RGB")).copy()
    except FormatError:
        raise
    except Exception as e:
        raise FormatError(f"JPEG section is corrupt ({e})") from None


def _cubic(t: float) -> np.ndarray:
    """The four bicubic weights of the samples at -1, 0, 1, 2 around a point t in [0, 1)."""
    x = np.array([t + 1, t, 1 - t, 2 - t])
    near = ((_A + 2) * x - (_A + 3)) * x * x + 1
    far = ((_A * x - 5 * _A) * x + 8 * _A) * x - 4 * _A
    return np.where(x <= 1, near, far).astype(np.float32)


def _double(a: np.ndarray, axis: int) -> np.ndarray:
    """Bicubic 2x along `axis`, as torch's (align_corners=False, edges clamped): output 2k sits
    at input k - 1/4, output 2k + 1 at k + 1/4; the weights are dyadic, exact in float32."""
    n = a.shape[axis]
    k = np.arange(n)
    out = []
    for first, t in ((-2, 0.75), (-1, 0.25)):
        taps = [np.take(a, np.clip(k + first + j, 0, n - 1), axis=axis) for j in range(4)]
        w = _cubic(t)
        out.append(((taps[0] * w[0] + taps[1] * w[1]) + taps[2] * w[2]) + taps[3] * w[3])
    return np.stack(out, axis=axis + 1).reshape(a.shape[:axis] + (2 * n,) + a.shape[axis + 1:])


class RecCNN:
    """RecCNN from its float32 graph (the bundle's rec.onnx); `quality_input`: whether it reads
    the JPEG quality plane (the weights' config)."""

    def __init__(self, graph: Path, quality_input: bool):
        self.graph = OnnxGraph(graph, {})
        self.quality_input = quality_input

    def __call__(self, compact: np.ndarray, quality: int) -> np.ndarray:
        """The compact image (h, w, 3) uint8 -> the padded image (2h, 2w, 3) uint8, in RecCNN's tiles."""
        x = compact.astype(np.float32).transpose(2, 0, 1) / np.float32(255)
        planes = [_double(_double(x, 1), 2)]
        if self.quality_input:
            planes.append(np.full((1, *planes[0].shape[1:]), np.float32(quality) / np.float32(100)))
        rec_in = np.concatenate(planes)[None]
        _, _, h, w = rec_in.shape
        out = np.empty((h, w, 3), dtype=np.uint8)
        for y0, y1, iy0, iy1 in spans(h, REC_TILE, REC_MARGIN):
            for x0, x1, ix0, ix1 in spans(w, REC_TILE, REC_MARGIN):
                x_hat = self.graph(rec_in[:, :, iy0:iy1, ix0:ix1])
                px = np.round(np.clip(x_hat[0], 0, 1) * np.float32(255)).astype(np.uint8).transpose(1, 2, 0)
                out[y0:y1, x0:x1] = px[y0 - iy0:y1 - iy0, x0 - ix0:x1 - ix0]
        return out
