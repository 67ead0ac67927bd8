"""A Pillow plugin for .nic, registered by `import nic`: `Image.open("x.nic")` and
`img.save("x.nic", quality=60)` work, and so does everything built on Pillow.

Opening reads and checks the container (magic, checksum, lengths) and takes the size and mode
from its header without decoding, and the kept EXIF and XMP into `info["exif"]`, `info["xmp"]`;
the pixels are decoded on `load()`, through the same
`nic.decompress` as the CLI. A damaged file raises Pillow's usual errors with nic's reason:
`UnidentifiedImageError` when the container is unreadable, `OSError` when decoding fails.
Written with Pillow's documented plugin API (an `ImageFile` subclass, a `PyDecoder`, and the
`register_*` functions).
"""

from __future__ import annotations

from typing import IO

from PIL import Image, ImageFile, UnidentifiedImageError

from nic import codec, container
from nic.errors import NicError
from nic.io import max_pixels
from nic.metadata import pil_info
from nic.quality import DEFAULT_QUALITY

FORMAT = "NIC"
EXTENSION = ".nic"
MIME = "image/x-nic"


def _accept(prefix: bytes) -> bool:
    return prefix.startswith(container.MAGIC)


def mode_of(header: container.Header) -> str:
    """The Pillow mode a file decodes to: the mode of the image it was made from."""
    alpha = "A" if header.channels in (2, 4) else ""
    return ("L" if header.grey else "RGB") + alpha


class NicImageFile(ImageFile.ImageFile):
    """A .nic file opened by Pillow: header now, pixels on load()."""

    format = FORMAT
    format_description = "nic learned image codec"

    def _open(self) -> None:
        assert self.fp is not None
        try:
            data = container.read_bounded(self.fp, container.max_file_size(max_pixels()))  # as every .nic read
            header, sections = container.unpack(data, max_pixels())
        except NicError as e:
            # Not SyntaxError: Image.open would swallow the reason into "cannot identify image file".
            raise UnidentifiedImageError(f"cannot identify image file {self.filename or ''!r}: {e}") from None
        self._size = (header.width, header.height)
        self._mode = mode_of(header)
        self.info.update(model=header.model, quality=header.quality)
        self.info.update(pil_info(codec.read_metadata(sections, header.grey)))  # EXIF, XMP, ICC profile
        self.tile = [ImageFile._Tile("nic", (0, 0, *self._size), 0)]


class NicDecoder(ImageFile.PyDecoder):
    """Decodes a whole .nic file (read from the file object) in one call."""

    _pulls_fd = True

    def decode(self, buffer: object) -> tuple[int, int]:
        from nic import decompress

        assert self.fd is not None
        try:
            image = decompress(self.fd.read())
        except NicError as e:
            raise OSError(f"cannot decode .nic file: {e}") from None
        if image.mode != self.mode or image.size != (self.state.xsize, self.state.ysize):
            raise OSError(f"cannot decode .nic file: decoded {image.mode} {image.size}, header says "
                          f"{self.mode} {(self.state.xsize, self.state.ysize)}")
        self.set_as_raw(image.tobytes())
        return -1, 0


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """`im.save(f, "NIC", quality=75 | bpp=0.5, model=NAME, effort=0, strip=False, strip_gps=False)`:
    bad options are a ValueError. The image's `info` EXIF, XMP and ICC profile are kept unless stripped."""
    from nic import compress

    options = im.encoderinfo
    if options.get("quality") is not None and options.get("bpp") is not None:
        raise ValueError("cannot write .nic: give quality or bpp, not both (bpp picks the quality)")
    try:
        data = compress(im, quality=options.get("quality", DEFAULT_QUALITY),
                        model=options.get("model"), bpp=options.get("bpp"), effort=options.get("effort", 0),
                        strip=bool(options.get("strip")), strip_gps=bool(options.get("strip_gps")))
    except NicError as e:
        raise ValueError(f"cannot write .nic: {e}") from None
    fp.write(data)


def register() -> None:
    """Make Pillow open and save .nic files (idempotent)."""
    Image.register_open(FORMAT, NicImageFile, _accept)
    Image.register_decoder("nic", NicDecoder)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_mime(FORMAT, MIME)
