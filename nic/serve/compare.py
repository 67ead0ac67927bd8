"""One comparison for the web page: nic, then JPEG, WebP and AVIF at the same file size.

nic codes the picture exactly as `nic compress` / `nic decompress` do (codec.encode or
codec.encode_to_size, then codec.decode); each classic codec takes
the setting whose file is the largest not above nic's (the matched-size search of `nic eval`,
classic.largest_under). Every number comes from those bytes and their decoded pixels.
In the JSON summary a PSNR is null when the pixels came back identical (it is infinite), and an
SSIM is null for a picture with a side under SSIM's 11-pixel window (it would not be SSIM).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from nic import codec
from nic.container import unpack
from nic.eval import classic
from nic.eval.metrics import psnr, ssim_rgb
from nic.io import Picture
from nic.quality import DEFAULT_QUALITY

Progress = Callable[[int, int, str], None]  # (steps done, steps in all, the step starting now)
CLASSICS = ("jpeg", "webp", "avif")
SSIM_WINDOW = 11  # the side of ssim_rgb's Gaussian window
FILE_TYPES = {"nic": ("nic", "application/octet-stream"), "jpeg": ("jpg", "image/jpeg"),
              "webp": ("webp", "image/webp"), "avif": ("avif", "image/avif")}


@dataclass
class Coded:
    """One codec's file for the picture, its decoded pixels, and their scores."""

    key: str
    label: str
    setting: str
    data: bytes
    decoded: Picture
    bpp: float
    psnr: float  # inf when the pixels are identical
    ssim: float | None  # None when the picture is too small for the window

    def summary(self) -> dict:
        """For JSON, which has no infinity: an identical picture's PSNR is None."""
        return {"key": self.key, "label": self.label, "setting": self.setting, "bytes": len(self.data),
                "bpp": self.bpp, "psnr": self.psnr if math.isfinite(self.psnr) else None, "ssim": self.ssim,
                "ext": FILE_TYPES[self.key][0]}


@dataclass
class Comparison:
    """The original and every codec's result at nic's file size."""

    original: Picture
    coded: list[Coded] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # codecs with no setting small enough

    def picture(self, key: str) -> Picture | None:
        """The original's or a codec's decoded pixels, by key."""
        if key == "original":
            return self.original
        return next((c.decoded for c in self.coded if c.key == key), None)

    def summary(self) -> dict:
        return {"width": self.original.width, "height": self.original.height, "budget": len(self.coded[0].data),
                "coded": [c.summary() for c in self.coded], "missing": self.missing}


def _score(key: str, label: str, setting: str, data: bytes, source: np.ndarray, decoded: Picture) -> Coded:
    rgb = decoded.rgb
    pixels = source.shape[0] * source.shape[1]
    small = min(source.shape[:2]) < SSIM_WINDOW
    return Coded(key, label, setting, data, decoded, len(data) * 8 / pixels,
                 psnr(source, rgb), None if small else ssim_rgb(source, rgb))


def _nic(data: bytes, source: np.ndarray) -> Coded:
    header = unpack(data)[0]
    return _score("nic", f"nic {header.model}", f"quality {header.quality}", data, source, codec.decode(data))


def _classic(name: str, source: np.ndarray, budget: int) -> Coded | None:
    spec = classic.get(name)
    found = classic.largest_under(name, source, budget)
    if found is None:
        return None
    param, data = found
    return _score(name, spec.label, f"{spec.param_name} {param}", data, source, Picture(classic.decode(data)))


def compare(picture: Picture, quality: int | None = None, bpp: float | None = None, model: str | None = None,
            codecs: tuple[str, ...] = CLASSICS, progress: Progress = lambda done, total, step: None) -> Comparison:
    """Code `picture` with nic at `quality` (or the largest file within `bpp`), then each classic
    codec at the largest file not above nic's; `progress` is told of each step as it starts.

    (Running the classic searches beside nic's decoding, in threads, was no faster on 2 cores.)
    """
    source = picture.rgb
    total = 1 + len(codecs)
    progress(0, total, "nic: encoding and decoding")
    with torch.inference_mode():
        data = codec.encode_to_size(picture, bpp, model) if bpp is not None else \
            codec.encode(picture, DEFAULT_QUALITY if quality is None else quality, model)
        result = Comparison(picture, [_nic(data, source)])
        for done, name in enumerate(codecs, 1):
            label = classic.get(name).label
            progress(done, total, f"{label}: searching for the largest file within {len(data):,} bytes")
            coded = _classic(name, source, len(data))
            if coded is None:
                result.missing.append(label)
            else:
                result.coded.append(coded)
    return result
