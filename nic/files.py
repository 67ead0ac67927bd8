"""One file in, one file out: what `nic compress` and `nic decompress` do to each file, whether
given one or a folder of them.

Every byte is computed before anything is written, and then written atomically; an existing
output is refused unless forced, before any work is done.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nic import codec, container, io, writes
from nic.errors import NicError
from nic.quality import DEFAULT_QUALITY

_PILLOW_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", "": "PNG"}  # else the suffix, e.g. .png -> PNG


@dataclass
class Compressed:
    """What compressing one file made."""

    path: Path
    size: int  # bytes written
    width: int
    height: int

    @property
    def bpp(self) -> float:
        return self.size * 8 / (self.width * self.height)


def _not_the_input(src: Path, dst: Path) -> None:
    """An output never replaces its input, --force or not."""
    try:
        same = os.path.samefile(src, dst)
    except OSError:  # one of them does not exist (yet)
        same = False
    if same:
        raise NicError(f"{dst}: is the input file; nic never writes over its input")


def compress_file(src: Path, dst: Path, quality: int = DEFAULT_QUALITY, bpp: float | None = None,
                  model: str | None = None, force: bool = False, effort: int = 0,
                  progress: bool = False, strip: bool = False, strip_gps: bool = False) -> Compressed:
    """An image file -> a .nic file, at `quality` or at the largest size within `bpp`, with
    `effort` (0-4) spent on the encoder; `progress` shows a bar on stderr while it is. Its
    EXIF, XMP and ICC profile are kept, but for `strip` (all) or `strip_gps` (the location)."""
    _not_the_input(src, dst)
    writes.check_writable(dst, force)
    picture = io.read_image(src)
    picture.keep_metadata(strip, strip_gps)
    if bpp is not None:
        data = codec.encode_to_size(picture, bpp, model, effort, progress)
    else:
        data = codec.encode(picture, quality, model, effort, progress)
    writes.atomic_write(dst, data, force)
    return Compressed(dst, len(data), picture.width, picture.height)


def decompress_file(src: Path, dst: Path, force: bool = False, exact: bool = False) -> io.Picture:
    """A .nic file -> an image file, in the format its suffix names (PNG for .png or none);
    `exact`: the integer synthesis, pixels bit-identical on every machine."""
    _not_the_input(src, dst)
    writes.check_writable(dst, force)
    picture = codec.decode(container.read(src, io.max_pixels()), exact=exact)
    suffix = dst.suffix.lower()
    try:
        encoded = io.encode_image(picture, _PILLOW_FORMATS.get(suffix, suffix.lstrip(".").upper()))
    except (KeyError, ValueError, OSError) as e:
        raise NicError(f"{dst}: cannot write this format ({e})") from None
    writes.atomic_write(dst, encoded, force)
    return picture
