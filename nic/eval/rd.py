"""Rate-distortion points through the real code paths: bytes as written to disk, decoded pixels.

`measure` (classic codecs) and `measure_learned` (a model's curve) are where an image is coded
and scored, for `nic eval` and for the RD points that training and export record.
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


def _score(picture: Picture, data: bytes, decoded: np.ndarray, metrics: Iterable[str], enc_s: float,
           dec_s: float) -> dict:
    """File bytes, bpp (bytes x 8 / pixels), compression ratio against raw 24-bit RGB, each
    metric on 8-bit RGB, and the encode and decode seconds."""
    pixels = picture.width * picture.height
    return {"bytes": len(data), "bpp": len(data) * 8 / pixels, "ratio": pixels * 3 / len(data),
            **{m: METRICS[m](picture.rgb, decoded) for m in metrics}, "enc_s": enc_s, "dec_s": dec_s}


def measure(picture: Picture, name: str, param: int, metrics: Iterable[str]) -> dict:
    """Code one image with a classic codec by name at one setting of its knob, and score it."""
    start = time.perf_counter()
    data = classic.encode(name, picture.rgb, param)
    encoded = time.perf_counter()
    decoded = classic.decode(data)
    return _score(picture, data, decoded, metrics, encoded - start, time.perf_counter() - encoded)


def measure_learned(picture: Picture, lm: LoadedModel, qualities: Iterable[int], metrics: Iterable[str],
                    effort: int = 0) -> list[dict]:
    """Code one image with a learned model at each quality (sharing the analysis and base
    layers, as `codec.sweep` does), decode each file as `nic decompress` would, and score it."""
    encode = codec.sweep(picture, lm, effort)
    rows = []
    for q in qualities:
        data, enc_s = encode(q)
        start = time.perf_counter()
        decoded = codec.decode(data, lm).rgb
        rows.append(_score(picture, data, decoded, metrics, enc_s, time.perf_counter() - start))
    return rows


def learned_points(lm: LoadedModel, images: list[Path], qualities: list[int]) -> list[dict]:
    """Mean bpp (file bytes x 8 / pixels) and RGB PSNR per quality over `images`."""
    pictures = [read_image(p) for p in images]
    points = []
    per_image = [measure_learned(pic, lm, qualities, ["psnr"]) for pic in pictures]
    for i, q in enumerate(qualities):
        rows = [r[i] for r in per_image]
        points.append({"quality": q, "bpp": float(np.mean([r["bpp"] for r in rows])),
                       "psnr": float(np.mean([r["psnr"] for r in rows]))})
    return points
