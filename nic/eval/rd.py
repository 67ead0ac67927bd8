"""Rate-distortion points of a learned model through the real code path (bytes on disk)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nic import codec
from nic.eval.metrics import psnr
from nic.io import read_image
from nic.models.registry import LoadedModel


def learned_points(lm: LoadedModel, images: list[Path], qualities: list[int]) -> list[dict]:
    """Mean bpp (file bytes x 8 / pixels) and RGB PSNR per quality over `images`."""
    pictures = [read_image(p) for p in images]
    points = []
    for q in qualities:
        bpp, db = [], []
        for pic in pictures:
            data = codec.encode(pic, q, lm)
            out = codec.decode(data, lm)
            bpp.append(len(data) * 8 / (pic.width * pic.height))
            db.append(psnr(pic.rgb, out.rgb))
        points.append({"quality": q, "bpp": float(np.mean(bpp)), "psnr": float(np.mean(db))})
    return points
