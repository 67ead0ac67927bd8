"""Reading any image Pillow can open into 8-bit arrays (writing files is `writes.py`).

A `Picture` is what the codec works on: upright (EXIF orientation applied), 8-bit colour or
grey pixels plus an optional alpha plane, the source's EXIF, XMP and ICC profile
(`nic/metadata.py`), and a note of what the source was. The pixels stay in the colour space
of their RGB (or grey) profile, which is kept so that wide-gamut colours survive; other
profiles (CMYK, say) are applied, converting the pixels to sRGB, and not kept. What nic
cannot read unambiguously is refused with one line, and what it changes on the way (bits
dropped, frames skipped) it says in a warning.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

from nic.errors import NicError
from nic.metadata import Metadata, describes, from_pil, save_options
from nic_decode.container import max_pixels  # shared with nic_decode

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".gif",
                  ".avif", ".jp2", ".heic", ".jxl", ".tga")  # what folder-walking commands pick up
_SRGB = ImageCms.createProfile("sRGB")
_T = Image.Transpose
_UPRIGHT = {2: _T.FLIP_LEFT_RIGHT, 3: _T.ROTATE_180, 4: _T.FLIP_TOP_BOTTOM, 5: _T.TRANSPOSE, 6: _T.ROTATE_270,
            7: _T.TRANSVERSE, 8: _T.ROTATE_90}  # what turns each EXIF orientation upright, as exif_transpose does


@dataclass
class Picture:
    """Upright 8-bit pixels: `pixels` is (H, W, 3) for colour or (H, W, 1) for grey."""

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    bit_depth: int = 8  # of the source; anything deeper was reduced to 8 bits
    orientation: int = 1  # the EXIF orientation that was applied
    metadata: Metadata = field(default_factory=Metadata)  # EXIF, XMP, ICC profile (of these pixels)

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

    def keep_metadata(self, strip: bool = False, strip_gps: bool = False) -> None:
        """Keep what `--strip` (nothing) or `--strip-gps` (all but the location) leaves. With no
        profile left to say what the pixels mean, pixels in their profile's space go to sRGB."""
        if strip and self.metadata.icc:
            img = Image.fromarray(self.pixels[:, :, 0] if self.pixels.shape[2] == 1 else self.pixels)
            img.info["icc_profile"] = self.metadata.icc
            out = np.asarray(_to_srgb(img))
            self.pixels = np.ascontiguousarray(out[:, :, None] if out.ndim == 2 else out)
        self.metadata = self.metadata.kept(strip, strip_gps)

    def to_pil(self) -> Image.Image:
        planes = self.pixels
        if self.alpha is not None:
            planes = np.concatenate([planes, self.alpha[:, :, None]], axis=2)
        mode = ("L" if self.pixels.shape[2] == 1 else "RGB") + ("A" if self.alpha is not None else "")
        return Image.fromarray(planes[:, :, 0] if planes.shape[2] == 1 else planes, mode)


def _values(a: np.ndarray) -> str:
    return f"{a.min():g}..{a.max():g}" if a.size else "none"


def _from_sixteen_bits(a: np.ndarray, what: str) -> np.ndarray:
    warnings.warn(f"{what} reduced to 8 bits per channel", stacklevel=3)
    return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _from_unit_floats(a: np.ndarray, what: str) -> np.ndarray:
    """Floats must be finite and in [0, 1]; anything else has no range nic could assume."""
    if not np.isfinite(a).all() or a.size and (a.min() < 0 or a.max() > 1):
        shown = "non-finite values" if not np.isfinite(a).all() else f"values {_values(a)}"
        raise NicError(f"{what} has {shown}: nic takes floats in [0, 1] (divide by 255 for 8-bit "
                       "values, or pass uint8)")
    return np.rint(a.astype(np.float64) * 255).astype(np.uint8)


def to_uint8(a: np.ndarray, what: str) -> tuple[np.ndarray, int]:
    """Samples of any dtype -> (uint8 samples, source bit depth), by the documented rules:
    uint8 as is; bool as 0/255; uint16 as 16-bit (reduced, with a warning); other integers
    must lie in 0..255; floats must lie in [0, 1]. Anything else is refused."""
    if a.dtype == np.uint8:
        return a, 8
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255, 8
    if a.dtype == np.uint16:
        return _from_sixteen_bits(a, f"16-bit {what}"), 16
    if np.issubdtype(a.dtype, np.floating):
        return _from_unit_floats(a, f"a float {what}"), 8
    if np.issubdtype(a.dtype, np.integer):
        if a.size and (a.min() < 0 or a.max() > 255):
            raise NicError(f"an {a.dtype} {what} has values {_values(a)}: nic takes other integer types as "
                           "8-bit values 0..255; pass uint16 for 16-bit data, or floats in [0, 1]")
        return a.astype(np.uint8), 8
    raise NicError(f"cannot code an array of dtype {a.dtype}: want uint8, uint16 or floats in [0, 1]")


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation that exif_transpose applies (1..8); other values are not applied,
    so they are recorded as 1, with a warning."""
    try:
        value = img.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block: Pillow raises several kinds
        warnings.warn("unreadable EXIF data ignored", stacklevel=3)
        return 1
    if isinstance(value, int) and 1 <= value <= 8:
        return value
    warnings.warn(f"EXIF orientation {value!r} is not a valid value (1 to 8): the image is coded as stored",
                  stacklevel=3)
    return 1


def _to_srgb(img: Image.Image) -> Image.Image:
    """Apply the image's ICC profile: convert its colours to sRGB (alpha untouched)."""
    icc = img.info.get("icc_profile")
    if not icc:
        return img
    alpha = img.getchannel("A") if img.mode in ("RGBA", "LA") else None
    base = img.convert({"RGBA": "RGB", "LA": "L"}.get(img.mode, img.mode))
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out = ImageCms.profileToProfile(base, profile, _SRGB, renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
                                        outputMode="RGB")
    except (OSError, ValueError, ImageCms.PyCMSError) as e:
        warnings.warn(f"ICC profile not applied ({e}): colours taken as sRGB", stacklevel=3)
        return img
    if base.mode == "L":
        out = out.convert("L")
    if alpha is not None:
        out.putalpha(alpha)
    return out


def _deep_grey(img: Image.Image) -> np.ndarray:
    """Deep grey modes: I;16 is 16-bit; I must lie in 0..65535 (taken as 16-bit); F in [0, 1]."""
    a = np.asarray(img)
    if img.mode == "F":
        return _from_unit_floats(a, "a float image")
    if a.size and (a.min() < 0 or a.max() > 65535):
        raise NicError(f"a 32-bit integer image has values {_values(a)}: nic takes integer images as "
                       "8 or 16 bits; convert it first")
    return _from_sixteen_bits(a, f"{img.mode} image")


def _key_alpha(img: Image.Image) -> np.ndarray | None:
    """The alpha plane of a deep grey image's colour key (a PNG tRNS sample): 0 where it matches."""
    key = img.info.get("transparency")
    if not isinstance(key, int) or img.mode == "F":
        return None
    alpha = np.where(np.asarray(img) == key, 0, 255).astype(np.uint8)
    return None if alpha.min() == 255 else alpha


def _keyed(img: Image.Image, sixteen: bool) -> Image.Image:
    """A colour-keyed image (PNG tRNS on grey or RGB) as grey+alpha or RGBA, so the key is kept
    as alpha. A 16-bit colour key no longer matches once Pillow has cut the pixels to 8 bits:
    that key is dropped aloud."""
    if sixteen:
        warnings.warn("the colour key (tRNS) of a 16-bit colour image is not kept: it is coded opaque",
                      stacklevel=3)
        return img
    return img.convert("RGBA" if img.mode == "RGB" else "LA")


def _is_sixteen_bit(img: Image.Image) -> bool:
    """Whether Pillow will reduce a 16-bit colour file to 8 bits as it loads it (known only
    before `load()`, from the raw mode of its tiles, e.g. RGB;16B for a 16-bit RGB PNG)."""
    for tile in getattr(img, "tile", None) or []:
        raw = tile.args if isinstance(tile.args, str) else (tile.args or [""])[0]
        if isinstance(raw, str) and ";16" in raw:
            return True
    return False


def picture_from_pil(img: Image.Image, sixteen: bool | None = None) -> Picture:
    """Normalise any Pillow image: orientation, frames, ICC profile, palette, CMYK, 16-bit, alpha.

    `sixteen`: whether the file was 16-bit colour (found before loading; see `_is_sixteen_bit`)."""
    if img.width < 1 or img.height < 1:
        raise NicError(f"cannot code an image of {img.width}x{img.height} pixels")
    if getattr(img, "n_frames", 1) > 1:
        warnings.warn(f"image has {img.n_frames} frames: only the first is coded", stacklevel=2)
    orientation = _orientation(img)
    meta = from_pil(img)
    sixteen = _is_sixteen_bit(img) if sixteen is None else sixteen
    if orientation != 1:  # not exif_transpose: it rewrites the EXIF, which fails on damaged blocks
        img = img.transpose(_UPRIGHT[orientation])
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        meta = meta if meta.icc and describes(meta.icc, grey=True) else replace(meta, icc=None)
        return Picture(_deep_grey(img)[:, :, None], _key_alpha(img), 16, orientation, meta)
    if sixteen:
        warnings.warn(f"16-bit {mode} image reduced to 8 bits per channel", stacklevel=2)
    if mode in ("La", "RGBa"):  # premultiplied: Pillow divides the alpha back out
        img = img.convert(mode.upper())
    elif mode in ("1", "L", "RGB") and "transparency" in img.info:
        img = _keyed(img, sixteen)
    elif mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    elif mode == "1":
        img = img.convert("L")
    # Coded in its own space, with its profile kept, nothing outside sRGB is clipped; a profile
    # that cannot describe these pixels (CMYK, say) is applied instead, and not kept.
    if not (meta.icc and img.mode in ("L", "LA", "RGB", "RGBA") and describes(meta.icc, grey=img.mode[0] == "L")):
        img, meta = _to_srgb(img), replace(meta, icc=None)
    if img.mode not in ("L", "LA", "RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in img.mode or "transparency" in img.info else "RGB")
    a = np.asarray(img)
    if img.mode in ("L", "LA"):
        pixels = a[:, :, None] if img.mode == "L" else a[:, :, :1]
    else:
        pixels = a[:, :, :3]
    alpha = a[:, :, -1].copy() if img.mode in ("LA", "RGBA") else None
    if alpha is not None and alpha.min() == 255:
        alpha = None  # an opaque alpha plane carries nothing
    return Picture(np.ascontiguousarray(pixels), alpha, 16 if sixteen else 8, orientation, meta)


def picture_from_array(a: np.ndarray) -> Picture:
    """(H, W) or (H, W, 1|2|3|4) arrays of the dtypes `to_uint8` documents; the pixel limit holds."""
    if not isinstance(a, np.ndarray):
        raise NicError(f"cannot code a {type(a).__name__}: want a PIL image or a numpy array")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or 0 in a.shape:
        raise NicError(f"cannot code an array of shape {a.shape}: want (H, W) or (H, W, 1-4)")
    check_size(a.shape[1], a.shape[0], "array")
    a, bit_depth = to_uint8(a, "array")
    colour = 3 if a.shape[2] >= 3 else 1
    alpha = a[:, :, colour].copy() if a.shape[2] in (2, 4) else None
    return Picture(np.ascontiguousarray(a[:, :, :colour]), alpha, bit_depth)


def check_size(width: int, height: int, what: str) -> None:
    limit = max_pixels()
    if width * height > limit:
        raise NicError(f"{what}: {width}x{height} is over the limit of {limit} pixels (set NIC_MAX_PIXELS)")


def _open_regular(path: Path):
    """Open a file for reading, refusing devices and FIFOs before anything blocks on them."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NicError(f"{path}: not a regular file")
    return os.fdopen(fd, "rb")


def read_image(path: str | os.PathLike, limit: int | None = None) -> Picture:
    """Read an image file into a Picture, with one-line errors for anything unreadable.

    Images over `limit` pixels (default: max_pixels()) are refused before they are decoded;
    devices and FIFOs before anything waits on them.
    """
    path = Path(path)
    try:
        with _open_regular(path) as f:
            return _read(f, str(path), limit)
    except FileNotFoundError:
        raise NicError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise NicError(f"{path}: is a directory") from None
    except PermissionError:
        raise NicError(f"{path}: cannot read (permission denied)") from None


def read_image_bytes(data: bytes, name: str, limit: int | None = None) -> Picture:
    """Read an image held in memory (an upload, say); `name` is what error messages call it."""
    return _read(io.BytesIO(data), name, limit)


def _read(source: BinaryIO, name: str, limit: int | None) -> Picture:
    limit = max_pixels() if limit is None else limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = limit
            with Image.open(source) as img:
                if img.width * img.height > limit:
                    raise NicError(f"{name}: {img.width}x{img.height} is over the limit of {limit} pixels")
                sixteen = _is_sixteen_bit(img)
                img.load()
                with warnings.catch_warnings(record=True) as said:
                    warnings.simplefilter("always")
                    try:
                        picture = picture_from_pil(img, sixteen)
                    except NicError as e:
                        raise NicError(f"{name}: {e}") from None
                for w in said:
                    warnings.warn(f"{name}: {w.message}", stacklevel=3)
                return picture
    except NicError:
        raise
    except UnidentifiedImageError:
        raise NicError(f"{name}: not an image that Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise NicError(f"{name}: image is over the limit of {limit} pixels") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise NicError(f"{name}: cannot read image ({e})") from None
    except MemoryError:
        raise
    except Exception as e:  # damaged files make Pillow and its plugins raise almost anything
        raise NicError(f"{name}: cannot read image ({type(e).__name__}: {e})") from None


# Pillow's options for formats that can keep every pixel but do not by default.
_LOSSLESS = {"PNG": {"compress_level": 1}, "WEBP": {"lossless": True, "exact": True}}


def encode_image(picture: Picture, fmt: str = "PNG") -> bytes:
    """Encode a Picture to bytes in a Pillow format (PNG unless the output name says other),
    keeping every pixel where the format can, and the picture's EXIF, XMP and ICC profile where
    Pillow can write them (`metadata.save_options`). WebP is
    written lossless, with the colour under transparent pixels kept. GIF holds 256 colours:
    more are quantized, with a warning.

    PNG is written at zlib level 1: 4x faster than Pillow's default level 6 (0.03 s instead of
    0.15 s at 768x512, longer than the decode itself), for files 5-30% larger."""
    img = picture.to_pil()
    if fmt == "GIF" and img.getcolors(256) is None:
        warnings.warn("GIF holds at most 256 colours: this image has more and is quantized to 256 "
                      "(write .png or .webp to keep every pixel)", stacklevel=2)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **_LOSSLESS.get(fmt, {}), **save_options(picture.metadata, fmt))
    return buf.getvalue()
