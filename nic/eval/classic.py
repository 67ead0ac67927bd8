"""Classic codecs through Pillow (and its JPEG XL / HEIF plugins), with one parameter each.

Every codec maps one integer parameter (its quality knob) to real file bytes; decoding goes
back through Pillow to 8-bit RGB.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from nic.errors import NicError


@dataclass(frozen=True)
class ClassicCodec:
    name: str
    label: str
    save: Callable[[Image.Image, io.BytesIO, int], None]
    params: tuple[int, ...]  # the sweep, low to high rate, covering ~0.1 to ~2.5 bpp on photos


def _jpeg(subsampling: int) -> Callable[[Image.Image, io.BytesIO, int], None]:
    def save(img: Image.Image, buf: io.BytesIO, q: int) -> None:
        img.save(buf, format="JPEG", quality=q, subsampling=subsampling, optimize=True)
    return save


def _webp(img: Image.Image, buf: io.BytesIO, q: int) -> None:
    img.save(buf, format="WEBP", quality=q, method=6)


def _jp2(img: Image.Image, buf: io.BytesIO, ratio: int) -> None:
    img.save(buf, format="JPEG2000", quality_mode="rates", quality_layers=[ratio],
             irreversible=True, mct=1)


def _avif(img: Image.Image, buf: io.BytesIO, q: int) -> None:
    img.save(buf, format="AVIF", quality=q)


def _jxl(img: Image.Image, buf: io.BytesIO, q: int) -> None:
    import pillow_jxl  # noqa: F401  (registers the JPEG XL plugin)
    img.save(buf, format="JXL", quality=q, effort=7)


def _heic(img: Image.Image, buf: io.BytesIO, q: int) -> None:
    import pillow_heif
    pillow_heif.register_heif_opener()
    img.save(buf, format="HEIF", quality=q, chroma=444)


CODECS: dict[str, ClassicCodec] = {c.name: c for c in [
    ClassicCodec("jpeg", "JPEG (4:2:0)", _jpeg(2), (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)),
    ClassicCodec("jpeg444", "JPEG (4:4:4)", _jpeg(0), (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)),
    ClassicCodec("webp", "WebP", _webp, (5, 15, 30, 45, 60, 75, 85, 92, 97)),
    ClassicCodec("jp2", "JPEG 2000", _jp2, (240, 160, 100, 64, 40, 24, 16, 10)),
    ClassicCodec("avif", "AVIF", _avif, (10, 25, 40, 55, 65, 75, 85, 92)),
    ClassicCodec("jxl", "JPEG XL", _jxl, (10, 25, 40, 55, 70, 80, 90, 95)),
    ClassicCodec("heic", "HEVC intra (x265)", _heic, (10, 25, 40, 55, 70, 80, 90, 95)),
]}


def get(name: str) -> ClassicCodec:
    if name not in CODECS:
        raise NicError(f"unknown codec {name!r} (known: {', '.join(CODECS)})")
    return CODECS[name]


def encode(name: str, rgb: np.ndarray, param: int) -> bytes:
    buf = io.BytesIO()
    get(name).save(Image.fromarray(rgb, "RGB"), buf, param)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1"):
        import pillow_heif
        pillow_heif.register_heif_opener()
    elif data[:2] == b"\xff\x0a" or data[4:8] == b"JXL ":
        import pillow_jxl  # noqa: F401
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB")).copy()


def largest_under(name: str, rgb: np.ndarray, max_bytes: int) -> tuple[int, bytes] | None:
    """The highest integer quality (1-100) of a quality-driven codec within `max_bytes`."""
    lo, hi, best = 1, 100, None
    while lo <= hi:
        mid = (lo + hi) // 2
        data = encode(name, rgb, mid)
        if len(data) <= max_bytes:
            best, lo = (mid, data), mid + 1
        else:
            hi = mid - 1
    return best
