"""nic: a learned image codec. `compress` an image to bytes, `decompress` bytes to an image.

Importing nic also registers its Pillow plugin: `Image.open("x.nic")`, `img.save("x.nic")`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from nic import codec, pillow
from nic.errors import FormatError, NicError
from nic.io import picture_from_array, picture_from_pil
from nic.metadata import pil_info
from nic.quality import DEFAULT_QUALITY

__all__ = ["compress", "decompress", "NicError", "FormatError"]
__version__ = "0.1.0"


def compress(image: Image.Image | np.ndarray, quality: int = DEFAULT_QUALITY,
             model: str | None = None, bpp: float | None = None, effort: int = 0, strip: bool = False,
             strip_gps: bool = False) -> bytes:
    """Compress a PIL image or a numpy array of shape (H, W) or (H, W, 1-4) channels (grey,
    grey+alpha, RGB, RGBA): uint8; bool (0/255); uint16 (16-bit, reduced to 8 with a warning);
    other integers in 0..255; floats in [0, 1]. Other values are refused, never guessed.

    Give `quality` (1-100, higher is better) or `bpp`, a target size in bits per pixel.
    `effort` (0-4) spends encoder time on smaller files for the same quality (see docs/EFFORT.md).
    A PIL image's EXIF, XMP and ICC profile (`info`) are kept, unless `strip` (all of them, the
    colours then converted to sRGB) or `strip_gps` (only the location).
    """
    if not isinstance(image, (Image.Image, np.ndarray)):
        raise NicError(f"cannot compress a {type(image).__name__}: want a PIL image or a numpy array")
    picture = picture_from_pil(image) if isinstance(image, Image.Image) else picture_from_array(image)
    picture.keep_metadata(strip, strip_gps)
    if bpp is not None:
        return codec.encode_to_size(picture, bpp, model, effort)
    return codec.encode(picture, quality, model, effort)


def decompress(data: bytes, exact: bool = False) -> Image.Image:
    """Decompress .nic bytes into a PIL image (L, LA, RGB or RGBA, as the source was), with
    the kept EXIF in `info["exif"]`, XMP in `info["xmp"]` and the ICC profile of the pixels in
    `info["icc_profile"]` (none: they are sRGB).

    `exact=True` gives pixels bit-identical on every machine (integer synthesis, about 5x
    slower); by default the synthesis runs in float, within a small measured tolerance of it.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise NicError(f"decompress takes the bytes of a .nic file, not a {type(data).__name__}")
    picture = codec.decode(bytes(data), exact=exact)
    image = picture.to_pil()
    image.info.update(pil_info(picture.metadata))
    return image


pillow.register()
