"""The .nic byte format (docs/FORMAT.md): a fixed header, section lengths, sections, CRC-32.

Parsing trusts nothing: every length is checked against the bytes actually present, the
checksum is verified before any field is believed, and sizes are bounded before allocation.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from nic.errors import FormatError
from nic.quality import QUALITY_MAX, QUALITY_MIN

MAGIC = b"\x89NIC"
VERSION = 1
MAX_SECTIONS = 1 << 16
ALPHA_SECTION, LATENT_SECTION = 1, 0

# magic, version, flags, quality, channels, bit depth, orientation, width, height, tile,
# weights hash, model-name length
_FIXED = struct.Struct("<4sBBBBBBIII8sB")
_SECTION = struct.Struct("<BI")  # kind, length
_COUNT = struct.Struct("<I")
_CRC = struct.Struct("<I")
FLAG_GREY = 1


@dataclass
class Header:
    model: str
    weights_hash: bytes  # first 8 bytes of the SHA-256 of the weights file
    quality: int
    width: int
    height: int
    channels: int = 3  # of the source, alpha included
    grey: bool = False
    bit_depth: int = 8
    orientation: int = 1
    tile: int = 0  # reserved: written as 0, not read (docs/FORMAT.md)
    sections: list[tuple[int, int]] = field(default_factory=list)  # (kind, length), filled by pack


def pack(header: Header, sections: list[tuple[int, bytes]]) -> bytes:
    """Serialize a header and its (kind, bytes) sections, with the checksum appended."""
    name = header.model.encode("ascii")
    if not 0 < len(name) < 256:
        raise ValueError("model name must be 1..255 ASCII characters")
    parts = [
        _FIXED.pack(MAGIC, VERSION, FLAG_GREY if header.grey else 0, header.quality, header.channels,
                    header.bit_depth, header.orientation, header.width, header.height, header.tile,
                    header.weights_hash, len(name)),
        name, _COUNT.pack(len(sections)),
        *(_SECTION.pack(kind, len(data)) for kind, data in sections),
        *(data for _, data in sections),
    ]
    body = b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


def unpack(data: bytes, max_pixels: int | None = None) -> tuple[Header, list[tuple[int, bytes]]]:
    """Parse and check a .nic file; every problem is a FormatError with a one-line reason.

    Decoders pass `max_pixels` (`io.max_pixels()`), the largest image they will allocate;
    without it, only reading the header, any positive size is accepted.
    """
    if len(data) < len(MAGIC) or data[:4] != MAGIC:
        raise FormatError("not a .nic file (bad magic)")
    if len(data) < _FIXED.size + _COUNT.size + _CRC.size:
        raise FormatError("truncated .nic file (shorter than its header)")
    if data[4] != VERSION:
        raise FormatError(f".nic format version {data[4]} is not supported (this nic reads version {VERSION})")
    body, (crc,) = data[:-_CRC.size], _CRC.unpack(data[-_CRC.size:])
    if zlib.crc32(body) != crc:
        raise FormatError("checksum mismatch: the .nic file is damaged or truncated")
    (_, _, flags, quality, channels, bit_depth, orientation, width, height, tile, whash,
     name_len) = _FIXED.unpack_from(body)
    pos = _FIXED.size
    if pos + name_len + _COUNT.size > len(body):
        raise FormatError("truncated .nic header")
    try:
        model = body[pos:pos + name_len].decode("ascii")
    except UnicodeDecodeError:
        raise FormatError("model name in header is not ASCII") from None
    pos += name_len
    (count,) = _COUNT.unpack_from(body, pos)
    pos += _COUNT.size
    if not QUALITY_MIN <= quality <= QUALITY_MAX:
        raise FormatError(f"quality {quality} in header is outside {QUALITY_MIN}..{QUALITY_MAX}")
    if not (1 <= width and 1 <= height) or (max_pixels is not None and width * height > max_pixels):
        raise FormatError(f"header claims {width}x{height} pixels (limit {max_pixels}; set NIC_MAX_PIXELS)")
    if channels not in (1, 2, 3, 4) or bit_depth not in (8, 16) or not 1 <= orientation <= 8:
        raise FormatError("header has impossible channels, bit depth or orientation")
    if count > MAX_SECTIONS or pos + count * _SECTION.size > len(body):
        raise FormatError(f"header claims {count} sections, more than the file holds")
    table = [_SECTION.unpack_from(body, pos + i * _SECTION.size) for i in range(count)]
    pos += count * _SECTION.size
    if pos + sum(length for _, length in table) != len(body):
        raise FormatError("section lengths do not add up to the file size")
    sections = []
    for kind, length in table:
        sections.append((kind, body[pos:pos + length]))
        pos += length
    header = Header(model, whash, quality, width, height, channels, bool(flags & FLAG_GREY),
                    bit_depth, orientation, tile, table)
    return header, sections
