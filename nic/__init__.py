"""nic: a learned image codec. `compress` an image to bytes, `decompress` bytes to an image.

Importing nic also registers its Pillow plugin: `Image.open("x.nic")`, `img.save("x.nic")`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from nic import codec, pillow
from nic.errors import FormatError, NicError
from nic.io import picture_from_array, picture_from_pil
from nic.quality import DEFAULT_QUALITY

__all__ = ["compress", "decompress", "NicError", "FormatError"]
__version__ = "0.1.0"


def compress(image: Image.Image | np.ndarray, quality: int = DEFAULT_QUALITY,
             model: str | None = None, bpp: float | None = None) -> bytes:
    """Compress a PIL image or a numpy array ((H, W[, C]) uint8, or floats in [0, 1]).

    Give `quality` (1-100, higher is better) or `bpp`, a target size in bits per pixel.
    """
    picture = picture_from_pil(image) if isinstance(image, Image.Image) else picture_from_array(image)
    if bpp is not None:
        return codec.encode_to_size(picture, bpp, model)
    return codec.encode(picture, quality, model)


def decompress(data: bytes) -> Image.Image:
    """Decompress .nic bytes into a PIL image (L, LA, RGB or RGBA, as the source was)."""
    return codec.decode(bytes(data)).to_pil()


pillow.register()
