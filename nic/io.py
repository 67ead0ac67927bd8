"""Reading any image Pillow can open into 8-bit arrays, and writing files atomically.

A `Picture` is what the codec works on: upright (EXIF orientation applied) 8-bit colour or
grey pixels plus an optional alpha plane, and a note of what the source was.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from nic.errors import NicError

_UMASK = os.umask(0)
os.umask(_UMASK)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".gif",
                  ".avif", ".jp2", ".heic", ".jxl", ".tga")  # what folder-walking commands pick up
DEFAULT_MAX_PIXELS = 1 << 26  # 67 Mpx, e.g. 8192 x 8192 (coding needs ~55 bytes per pixel)


def max_pixels() -> int:
    """The largest image (in pixels) nic reads or decodes; set NIC_MAX_PIXELS to change it."""
    value = os.environ.get("NIC_MAX_PIXELS", "")
    try:
        return int(value) if value else DEFAULT_MAX_PIXELS
    except ValueError:
        raise NicError(f"NIC_MAX_PIXELS must be an integer, got {value!r}") from None


@dataclass
class Picture:
    """Upright 8-bit pixels: `pixels` is (H, W, 3) for colour or (H, W, 1) for grey."""

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    bit_depth: int = 8  # of the source; anything deeper was reduced to 8 bits
    orientation: int = 1  # the EXIF orientation that was applied

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def channels(self) -> int:
        return self.pixels.shape[2] + (self.alpha is not None)

    @property
    def rgb(self) -> np.ndarray:
        """The pixels as (H, W, 3), grey replicated: what the colour models code."""
        return np.repeat(self.pixels, 3, axis=2) if self.pixels.shape[2] == 1 else self.pixels

    def to_pil(self) -> Image.Image:
        planes = self.pixels
        if self.alpha is not None:
            planes = np.concatenate([planes, self.alpha[:, :, None]], axis=2)
        mode = ("L" if self.pixels.shape[2] == 1 else "RGB") + ("A" if self.alpha is not None else "")
        return Image.fromarray(planes[:, :, 0] if planes.shape[2] == 1 else planes, mode)


def _reduce_to_8bit(img: Image.Image) -> np.ndarray:
    """Deep grey modes (I;16, I, F) to 8 bits, assuming the 16-bit range for integers."""
    a = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        top = 1.0 if a.size and np.nanmax(a) <= 1.0 else 255.0
    else:
        top = 65535.0
    return np.clip(np.rint(np.nan_to_num(a) * (255.0 / top)), 0, 255).astype(np.uint8)


def picture_from_pil(img: Image.Image) -> Picture:
    """Normalise any Pillow image: orientation, palette, CMYK, 16-bit, alpha."""
    orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
    img = ImageOps.exif_transpose(img) or img
    bit_depth = 8
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        warnings.warn(f"{mode} image reduced to 8 bits per channel", stacklevel=2)
        return Picture(_reduce_to_8bit(img)[:, :, None], bit_depth=16, orientation=orientation)
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    elif mode == "1":
        img = img.convert("L")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in mode or "transparency" in img.info else "RGB")
    a = np.asarray(img)
    if img.mode in ("L", "LA"):
        pixels = a[:, :, None] if img.mode == "L" else a[:, :, :1]
    else:
        pixels = a[:, :, :3]
    alpha = a[:, :, -1].copy() if img.mode in ("LA", "RGBA") else None
    if alpha is not None and alpha.min() == 255:
        alpha = None  # an opaque alpha plane carries nothing
    return Picture(np.ascontiguousarray(pixels), alpha, bit_depth, orientation)


def picture_from_array(a: np.ndarray) -> Picture:
    """(H, W), (H, W, 1|2|3|4) uint8 arrays, or float arrays in [0, 1]."""
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or 0 in a.shape:
        raise NicError(f"cannot code an array of shape {a.shape}: want (H, W) or (H, W, 1-4)")
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating):
            a = np.clip(np.rint(np.nan_to_num(a) * 255), 0, 255).astype(np.uint8)
        elif np.issubdtype(a.dtype, np.integer) and a.size and a.min() >= 0 and a.max() <= 255:
            a = a.astype(np.uint8)
        else:
            raise NicError(f"cannot code an array of dtype {a.dtype}: want uint8, or floats in [0, 1]")
    colour = 3 if a.shape[2] >= 3 else 1
    alpha = a[:, :, colour].copy() if a.shape[2] in (2, 4) else None
    return Picture(np.ascontiguousarray(a[:, :, :colour]), alpha)


def read_image(path: str | os.PathLike, limit: int | None = None) -> Picture:
    """Read an image file into a Picture, with one-line errors for anything unreadable.

    Images over `limit` pixels (default: max_pixels()) are refused before they are decoded.
    """
    path = Path(path)
    try:
        return _read(path, str(path), limit)
    except FileNotFoundError:
        raise NicError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise NicError(f"{path}: is a directory") from None


def read_image_bytes(data: bytes, name: str, limit: int | None = None) -> Picture:
    """Read an image held in memory (an upload, say); `name` is what error messages call it."""
    return _read(io.BytesIO(data), name, limit)


def _read(source: Path | io.BytesIO, name: str, limit: int | None) -> Picture:
    limit = max_pixels() if limit is None else limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = limit
            with Image.open(source) as img:
                if img.width * img.height > limit:
                    raise NicError(f"{name}: {img.width}x{img.height} is over the limit of {limit} pixels")
                img.load()
                return picture_from_pil(img)
    except (NicError, FileNotFoundError, IsADirectoryError):
        raise
    except UnidentifiedImageError:
        raise NicError(f"{name}: not an image that Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise NicError(f"{name}: image is over the limit of {limit} pixels") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise NicError(f"{name}: cannot read image ({e})") from None


def encode_image(picture: Picture, fmt: str = "PNG") -> bytes:
    """Encode a Picture to bytes in a Pillow format (PNG unless the output name says other)."""
    buf = io.BytesIO()
    picture.to_pil().save(buf, format=fmt)
    return buf.getvalue()


def check_writable(path: str | os.PathLike, force: bool) -> Path:
    """Refuse to overwrite an existing file unless forced; say so before any work is done."""
    path = Path(path)
    if path.exists() and not force:
        raise NicError(f"{path}: already exists (use --force to overwrite)")
    if path.is_dir():
        raise NicError(f"{path}: is a directory")
    if not path.parent.exists():
        raise NicError(f"{path.parent}: no such directory")
    return path


def atomic_write(path: str | os.PathLike, data: bytes, force: bool = False) -> None:
    """Write a whole file or nothing: callers compute every byte first, then this writes a
    hidden temp file in the same folder, fsyncs it and renames it into place, so a kill at
    any moment leaves either no output or the complete one (at worst a stray .NAME.*.tmp)."""
    path = check_writable(path, force)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
