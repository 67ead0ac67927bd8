"""Classic codecs through Pillow (and its JPEG XL / HEIF plugins), with one parameter each.

Every codec maps one integer parameter (its quality knob) to real file bytes; decoding goes
back through Pillow to 8-bit RGB. Encoder settings are each library's defaults through Pillow
(JPEG: baseline, standard Huffman tables, as `Image.save(..., quality=q)` writes it; AVIF:
libaom at Pillow's default speed 6), except where a line below says otherwise.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version as package_version

import numpy as np
from PIL import Image

from nic.errors import NicError
from nic.sizing import largest_within


@dataclass(frozen=True)
class ClassicCodec:
    name: str
    label: str
    save: Callable[[Image.Image, io.BytesIO, int], None]
    params: tuple[int, ...]  # the sweep, low to high rate, covering ~0.1 to ~2.5 bpp on photos
    knob: range  # every usable parameter value, from the smallest file to the largest
    plugin: str = "pillow"  # the package whose version identifies the encoder
    param_name: str = "quality"


def _jpeg(subsampling: int) -> Callable[[Image.Image, io.BytesIO, int], None]:
    def save(img: Image.Image, buf: io.BytesIO, q: int) -> None:
        img.save(buf, format="JPEG", quality=q, subsampling=subsampling)
    return save


def _webp(img: Image.Image, buf: io.BytesIO, q: int) -> None:
    # method=6: libwebp's slowest, smallest setting, so WebP is shown at its best
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


# Sweeps checked on all of Kodak: mean bpp from about 0.1 to 2.4 (JPEG XL from 0.16: it goes no
# lower), nine points each, denser where the curves bend.
CODECS: dict[str, ClassicCodec] = {c.name: c for c in [
    ClassicCodec("jpeg", "JPEG (4:2:0)", _jpeg(2), (3, 5, 10, 20, 30, 50, 70, 85, 90), range(1, 101)),
    ClassicCodec("jpeg444", "JPEG (4:4:4)", _jpeg(0), (3, 5, 10, 20, 30, 50, 70, 85, 90), range(1, 101)),
    ClassicCodec("webp", "WebP", _webp, (0, 5, 15, 30, 50, 70, 80, 86, 92), range(0, 101)),
    ClassicCodec("jp2", "JPEG 2000", _jp2, (240, 160, 100, 64, 40, 24, 16, 12, 10), range(1000, 1, -1),
                 param_name="compression ratio"),
    ClassicCodec("avif", "AVIF", _avif, (10, 20, 30, 40, 50, 60, 70, 80, 89), range(0, 101)),
    ClassicCodec("jxl", "JPEG XL", _jxl, (1, 10, 20, 30, 45, 60, 75, 85, 93), range(0, 100), "pillow-jxl-plugin"),
    ClassicCodec("heic", "HEVC intra (x265)", _heic, (10, 15, 20, 25, 30, 35, 40, 50, 60), range(0, 101),
                 "pillow-heif"),
]}


def get(name: str) -> ClassicCodec:
    if name not in CODECS:
        raise NicError(f"unknown codec {name!r} (known: {', '.join(CODECS)})")
    return CODECS[name]


def version(name: str) -> str:
    """Which encoder made a file, so that cached results are redone after an upgrade."""
    codec = get(name)
    return f"{codec.plugin} {package_version(codec.plugin)}"


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
    """The parameter (and file) giving the largest file within `max_bytes`; None when even the
    smallest setting is too large."""
    param, data = largest_within(lambda p: encode(name, rgb, p), get(name).knob, max_bytes)
    return (param, data) if len(data) <= max_bytes else None
