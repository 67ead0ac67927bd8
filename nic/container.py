"""The .nic byte format (docs/FORMAT.md): writing it here, reading it in nic_decode.container.

The reader (parsing, every check, the bounded file read) lives in the torch-free nic_decode,
so nic and nic_decode accept and refuse the same files with the same messages. Writing checks
a header with the reader's own functions, so nic never writes a file that it would refuse to read.
"""

from __future__ import annotations

import zlib

from nic.errors import FormatError
from nic_decode.container import (
    ALPHA_SECTION,
    COUNT,
    CRC,
    EXIF_SECTION,
    FINE_SECTION,
    FINE_VERSION,
    FIXED,
    FLAG_GREY,
    ICC_SECTION,
    LATENT_SECTION,
    MAGIC,
    MAX_SECTIONS,
    METADATA_KINDS,
    METADATA_VERSION,
    ORIENTATIONS,
    READABLE,
    SECTION,
    SECTION_KINDS,
    TERMINATED_FROM,
    VERSION,
    XMP_SECTION,
    Header,
    check,
    check_sections,
    is_model_name,
    max_file_size,
    read,
    read_bounded,
)
from nic_decode.container import unpack as _unpack

READER = "nic"  # how messages name this reader
__all__ = ["ALPHA_SECTION", "EXIF_SECTION", "FINE_SECTION", "FINE_VERSION", "ICC_SECTION", "LATENT_SECTION",
           "MAGIC", "MAX_SECTIONS", "METADATA_KINDS", "METADATA_VERSION", "ORIENTATIONS", "READABLE",
           "SECTION_KINDS", "TERMINATED_FROM", "VERSION", "XMP_SECTION", "Header", "check", "is_model_name",
           "max_file_size", "pack", "read", "read_bounded", "unpack"]


def pack(header: Header, sections: list[tuple[int, bytes]]) -> bytes:
    """Serialize a header and its (kind, bytes) sections, with the checksum appended.

    The header is checked by the reader's own rules first: a header that nic could not read
    back is a bug, raised here instead of being written."""
    check(header, 0, reader=READER)
    check_sections(header, [kind for kind, _ in sections])
    if len(sections) > MAX_SECTIONS:
        raise FormatError(f"{len(sections)} sections, more than {MAX_SECTIONS}")
    name = header.model.encode("ascii")
    parts = [
        FIXED.pack(MAGIC, header.version, FLAG_GREY if header.grey else 0, header.quality, header.channels,
                   header.bit_depth, header.orientation, header.width, header.height, header.fold,
                   header.weights_hash, len(name)),
        name, COUNT.pack(len(sections)),
        *(SECTION.pack(kind, len(data)) for kind, data in sections),
        *(data for _, data in sections),
    ]
    body = b"".join(parts)
    return body + CRC.pack(zlib.crc32(body))


def unpack(data: bytes, max_pixels: int | None = None) -> tuple[Header, list[tuple[int, bytes]]]:
    """nic_decode.container.unpack, its messages naming nic: decoders pass `max_pixels`
    (`io.max_pixels()`); without it, only reading the header, any positive size is accepted."""
    return _unpack(data, max_pixels, READER)
