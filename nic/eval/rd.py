"""Rate-distortion points through the real code paths: bytes as written to disk, decoded pixels.

`measure` is the one place where an image is coded and scored, for `nic eval` and for the RD
points that training and export record.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from nic import codec
from nic.eval import classic
from nic.eval.metrics import METRICS
from nic.io import Picture, read_image
from nic.models.registry import LoadedModel


def measure(picture: Picture, model_or_codec: str | LoadedModel, param: int, metrics: Iterable[str]) -> dict:
    """Code one image with a learned model (param: quality) or a classic codec by name (param: its knob).

    Returns file bytes, bpp (bytes x 8 / pixels), compression ratio against raw 24-bit RGB, each
    metric on 8-bit RGB, and the encode and decode seconds.
    """
    start = time.perf_counter()
    if isinstance(model_or_codec, LoadedModel):
        data = codec.encode(picture, param, model_or_codec)
        encoded = time.perf_counter()
        decoded = codec.decode(data, model_or_codec).rgb
    else:
        data = classic.encode(model_or_codec, picture.rgb, param)
        encoded = time.perf_counter()
        decoded = classic.decode(data)
    done = time.perf_counter()
    pixels = picture.width * picture.height
    return {"bytes": len(data), "bpp": len(data) * 8 / pixels, "ratio": pixels * 3 / len(data),
            **{m: METRICS[m](picture.rgb, decoded) for m in metrics},
            "enc_s": encoded - start, "dec_s": done - encoded}


def learned_points(lm: LoadedModel, images: list[Path], qualities: list[int]) -> list[dict]:
    """Mean bpp (file bytes x 8 / pixels) and RGB PSNR per quality over `images`."""
    pictures = [read_image(p) for p in images]
    points = []
    for q in qualities:
        rows = [measure(pic, lm, q, ["psnr"]) for pic in pictures]
        points.append({"quality": q, "bpp": float(np.mean([r["bpp"] for r in rows])),
                       "psnr": float(np.mean([r["psnr"] for r in rows]))})
    return points
