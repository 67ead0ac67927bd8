"""What a photo carries besides its pixels: EXIF, XMP and the ICC profile, kept through nic.

Read from the source image, cleaned (the EXIF and XMP orientation set to 1, since nic stores
pixels upright; GPS dropped on request), packed into container sections (docs/FORMAT.md) and
written back into the decoded file. Metadata never decides a pixel: a damaged section is
skipped with a warning by the decoder, and every size is bounded before anything is inflated.
"""

from __future__ import annotations

import io
import re
import warnings
import zlib
from dataclasses import dataclass, replace

from PIL import Image, ImageCms, PngImagePlugin

from nic.errors import FormatError

MAX_BYTES = 1 << 20  # each of EXIF, XMP and the ICC profile, decoded
RAW, DEFLATE = 0, 1  # a metadata section's first byte: how the rest is stored
EXIF_PREFIX = b"Exif\x00\x00"  # how JPEG and Pillow's info["exif"] start; the container stores the TIFF block after it
_ORIENTATION, _GPS_IFD, _TIFF_XMP = 0x0112, 0x8825, 700
_XMP_ORIENTATION = re.compile(rb'(tiff:Orientation\s*=\s*["\']|<tiff:Orientation>)\s*[0-9]')
_XMP_GPS = (re.compile(rb'\s+exif:GPS\w+\s*=\s*("[^"]*"|\'[^\']*\')'),
            re.compile(rb"<exif:GPS(\w+)\b[^>]*?(/>|>.*?</exif:GPS\1>)", re.S))
_WRITES_EXIF_XMP = ("JPEG", "WEBP", "AVIF")  # Pillow formats whose save takes exif= and xmp=
_WRITES_ICC = ("PNG", "JPEG", "WEBP", "AVIF", "TIFF")  # and icc_profile=


@dataclass(frozen=True)
class Metadata:
    exif: bytes | None = None  # a TIFF-structured EXIF block (no "Exif\0\0"), orientation 1
    xmp: bytes | None = None  # an XMP packet, UTF-8
    icc: bytes | None = None  # the ICC profile of the coded pixels (RGB, or grey for grey); none: sRGB

    def kept(self, strip: bool = False, strip_gps: bool = False) -> Metadata:
        """What `--strip` (everything) or `--strip-gps` (only the location) leaves."""
        if strip:
            return Metadata()
        if not strip_gps:
            return self
        return replace(self, exif=self.exif and _clean_exif(self.exif, strip_gps=True),
                       xmp=self.xmp and _XMP_GPS[1].sub(b"", _XMP_GPS[0].sub(b"", self.xmp)))

    def __bool__(self) -> bool:
        return any((self.exif, self.xmp, self.icc))


def _clean_exif(raw: bytes, strip_gps: bool = False) -> bytes | None:
    """The EXIF block with orientation 1 (and without the GPS IFD if asked); untouched when
    nothing changes, so maker notes keep their offsets. Unreadable EXIF is dropped aloud."""
    exif = Image.Exif()
    try:
        with warnings.catch_warnings(record=True) as said:  # Pillow warns of corrupt EXIF, then loads less
            warnings.simplefilter("always")
            exif.load(raw if raw.startswith(EXIF_PREFIX) else EXIF_PREFIX + raw)
        if said:
            raise ValueError(said[0].message)
        if not exif:
            return None
        if exif.get(_ORIENTATION, 1) != 1 or (strip_gps and _GPS_IFD in exif):
            if _ORIENTATION in exif:
                exif[_ORIENTATION] = 1
            if strip_gps:
                exif.pop(_GPS_IFD, None)
            raw = exif.tobytes()
    except Exception as e:  # a damaged EXIF block makes Pillow raise several kinds
        warnings.warn(f"EXIF data not kept: it cannot be read ({e})", stacklevel=3)
        return None
    return _bounded(raw.removeprefix(EXIF_PREFIX), "EXIF")


def _bounded(data: bytes | None, what: str) -> bytes | None:
    if data and len(data) > MAX_BYTES:
        warnings.warn(f"{what} not kept: {len(data)} bytes, over nic's limit of {MAX_BYTES}", stacklevel=4)
        return None
    return data or None


def from_pil(img: Image.Image) -> Metadata:
    """The metadata of an opened image (JPEG, PNG, WebP, AVIF, TIFF's XMP), cleaned."""
    exif, xmp, icc = img.info.get("exif"), img.info.get("xmp"), img.info.get("icc_profile")
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    if isinstance(xmp, bytes):
        xmp = _XMP_ORIENTATION.sub(lambda m: m.group(1) + b"1", xmp)
    return Metadata(_clean_exif(exif) if isinstance(exif, bytes) and exif else None,
                    _bounded(xmp if isinstance(xmp, bytes) else None, "XMP"),
                    _bounded(icc if isinstance(icc, bytes) else None, "ICC profile"))


def describes(icc: bytes, grey: bool) -> bool:
    """Whether a profile can say what 8-bit pixels mean: one LittleCMS reads, of the pixels'
    colour space (RGB, or grey for grey pixels). Others (CMYK, Lab, damaged) are applied instead."""
    try:
        space = ImageCms.ImageCmsProfile(io.BytesIO(icc)).profile.xcolor_space
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return False
    return space.strip() == ("GRAY" if grey else "RGB")


def pil_info(meta: Metadata) -> dict:
    """Pillow's `info` keys for the kept metadata, as its own plugins set them."""
    info = {"exif": EXIF_PREFIX + meta.exif} if meta.exif else {}
    return info | ({"xmp": meta.xmp} if meta.xmp else {}) | ({"icc_profile": meta.icc} if meta.icc else {})


def pack(data: bytes) -> bytes:
    """A metadata section: a first byte saying how the rest is stored, deflated where that pays."""
    deflated = zlib.compress(data, 9)
    return bytes([DEFLATE]) + deflated if len(deflated) < len(data) else bytes([RAW]) + data


def unpack(section: bytes, what: str) -> bytes:
    """A metadata section's bytes; FormatError if damaged or over MAX_BYTES, found before more
    than MAX_BYTES + 1 bytes are ever inflated."""
    if not section:
        raise FormatError(f"{what} section is empty")
    how, body = section[0], section[1:]
    if how == RAW:
        data = body
    elif how == DEFLATE:
        inflater = zlib.decompressobj()
        try:
            data = inflater.decompress(body, MAX_BYTES + 1)
        except zlib.error as e:
            raise FormatError(f"{what} section is corrupt ({e})") from None
        if len(data) <= MAX_BYTES and (not inflater.eof or inflater.unused_data):
            raise FormatError(f"{what} section is truncated or has data after its end")
    else:
        raise FormatError(f"{what} section is stored in an unknown way ({how})")
    if len(data) > MAX_BYTES:
        raise FormatError(f"{what} section holds more than {MAX_BYTES} bytes")
    if not data:
        raise FormatError(f"{what} section holds nothing")
    return data


def save_options(meta: Metadata, fmt: str) -> dict:
    """Pillow save arguments that write EXIF, XMP and the pixels' ICC profile into a `fmt` file."""
    icc = {"icc_profile": meta.icc} if meta.icc and fmt in _WRITES_ICC else {}
    return _exif_xmp_options(meta, fmt) | icc


def _exif_xmp_options(meta: Metadata, fmt: str) -> dict:
    exif = EXIF_PREFIX + meta.exif if meta.exif else None
    if fmt == "PNG":
        options: dict = {"exif": exif} if exif else {}
        if meta.xmp:
            info = PngImagePlugin.PngInfo()
            info.add_itxt("XML:com.adobe.xmp", meta.xmp.decode("utf-8", "replace"), zip=True)
            options["pnginfo"] = info
        return options
    if fmt in _WRITES_EXIF_XMP:
        return {k: v for k, v in (("exif", exif), ("xmp", meta.xmp)) if v}
    if fmt == "TIFF":  # both go in the TIFF's own tags
        tags = Image.Exif()
        if exif:
            tags.load(exif)
        if meta.xmp:
            tags[_TIFF_XMP] = meta.xmp
        return {"exif": tags} if exif or meta.xmp else {}
    Image.init()
    if (meta.exif or meta.xmp) and fmt in Image.SAVE:  # a format Pillow cannot write fails on its own
        warnings.warn(f"EXIF and XMP are not written into {fmt} files (write .png, .jpg, .webp or .tif "
                      "to keep them)", stacklevel=4)
    if meta.icc and fmt in Image.SAVE:
        warnings.warn(f"the colour profile is not written into {fmt} files, so viewers take the pixels as "
                      "sRGB (write .png, .jpg, .webp or .tif to keep it)", stacklevel=4)
    return {}
