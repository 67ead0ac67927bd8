"""Reading the .nic byte format (docs/FORMAT.md): a fixed header, section lengths, sections, CRC-32.

Parsing trusts nothing: every length is checked against the bytes actually present, the
checksum is verified before any field is believed, and sizes are bounded before allocation.
This is nic's reader too (nic/container.py adds the writer, which checks a header with the
same functions, so nic never writes a file that it would refuse to read).
"""

from __future__ import annotations

import os
import stat
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from nic_decode.errors import FormatError, NicError

MAGIC = b"\x89NIC"
VERSION = 2  # what nic writes, unless a file has a fine layer
FINE_VERSION = 3  # the version of a file with fine sections: older readers refuse it
METADATA_VERSION = 4  # the version of a file with metadata sections (and maybe fine ones): older readers refuse it
READABLE = (1, 2, 3, 4)  # what it reads
TERMINATED_FROM = 2  # streams end with a terminator from this version on (coder.py)
MAX_SECTIONS = 1 << 16
LATENT_SECTION, ALPHA_SECTION, FINE_SECTION = 0, 1, 2
EXIF_SECTION, XMP_SECTION, ICC_SECTION = 3, 4, 5
METADATA_KINDS = (EXIF_SECTION, XMP_SECTION, ICC_SECTION)  # at most one each (nic/metadata.py)
SECTION_KINDS = (LATENT_SECTION, ALPHA_SECTION, FINE_SECTION, *METADATA_KINDS)
ORIENTATIONS = range(1, 9)
QUALITY_MIN, QUALITY_MAX = 1, 100  # the header's quality scale (nic/quality.py)
DEFAULT_MAX_PIXELS = 1 << 26  # 67 Mpx, e.g. 8192 x 8192 (coding needs ~55 bytes per pixel)
LARGEST_MAX_PIXELS = 1 << 36  # 69 Gpx, terabytes to code: a larger NIC_MAX_PIXELS is a typo, not a plan

# magic, version, flags, quality, channels, bit depth, orientation, width, height, fold,
# weights hash, model-name length
FIXED = struct.Struct("<4sBBBBBBIII8sB")
SECTION = struct.Struct("<BI")  # kind, length
COUNT = struct.Struct("<I")
CRC = struct.Struct("<I")
FLAG_GREY = 1
_CHUNK = 1 << 24  # bytes read at a time by read_bounded
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


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
    fold: int = 0  # strip length of a folded thin image (geometry.py); 0 = not folded, always in version 1
    sections: list[tuple[int, int]] = field(default_factory=list)  # (kind, length), filled by pack
    version: int = VERSION


def max_pixels() -> int:
    """The largest image (in pixels) nic reads or decodes; set NIC_MAX_PIXELS to change it."""
    value = os.environ.get("NIC_MAX_PIXELS", "")
    try:
        limit = int(value) if value else DEFAULT_MAX_PIXELS
    except ValueError:
        raise NicError(f"NIC_MAX_PIXELS must be an integer, got {value!r}") from None
    if not 1 <= limit <= LARGEST_MAX_PIXELS:
        raise NicError(f"NIC_MAX_PIXELS must be from 1 to {LARGEST_MAX_PIXELS}, got {value!r}")
    return limit


def is_model_name(name: str) -> bool:
    """Whether a header can hold `name`: 1 to 255 letters, digits, '-' and '_'."""
    return 0 < len(name) < 256 and set(name) <= _NAME_CHARS


def _unsupported(version: int, reader: str) -> FormatError:
    return FormatError(f".nic format version {version} is not supported (this {reader} reads versions "
                       f"{', '.join(map(str, READABLE))})")


def check(h: Header, flags: int = 0, max_pixels: int | None = None, reader: str = "decoder") -> None:
    """Every header rule of docs/FORMAT.md but the section table's: FormatError if one fails.
    The pixel limit is checked when given (decoders pass theirs); `reader` names the program
    in the message for an unreadable version."""
    if h.version not in READABLE:
        raise _unsupported(h.version, reader)
    if flags & ~FLAG_GREY:
        raise FormatError(f"header sets reserved flag bits ({flags:#04x})")
    if not is_model_name(h.model):
        raise FormatError(f"model name {h.model!r} in header is not a model name")
    if len(h.weights_hash) != 8:
        raise FormatError("weights hash in header is not 8 bytes")
    if not QUALITY_MIN <= h.quality <= QUALITY_MAX:
        raise FormatError(f"quality {h.quality} in header is outside {QUALITY_MIN}..{QUALITY_MAX}")
    if not (1 <= h.width < 1 << 32 and 1 <= h.height < 1 << 32) or \
            max_pixels is not None and h.width * h.height > max_pixels:
        raise FormatError(f"header claims {h.width}x{h.height} pixels (limit {max_pixels}; set NIC_MAX_PIXELS)")
    if h.channels not in (1, 2, 3, 4):
        raise FormatError(f"header claims {h.channels} channels (1 to 4)")
    if h.grey != (h.channels in (1, 2)):
        raise FormatError(f"header claims {h.channels} channel(s) but the grey flag is {'set' if h.grey else 'clear'}")
    if h.bit_depth not in (8, 16) or (h.bit_depth == 16 and h.version == 1 and not h.grey):
        raise FormatError(f"header claims a {h.bit_depth}-bit {'grey' if h.grey else 'colour'} source, "
                          f"which no version {h.version} file has")
    if h.orientation not in ORIENTATIONS:
        raise FormatError(f"header has EXIF orientation {h.orientation} (1 to 8)")
    if h.fold != 0 and h.version == 1:
        raise FormatError(f"header has fold {h.fold}; version 1 files are never folded")


def check_sections(h: Header, kinds: list[int]) -> None:
    """The section table's rules: FormatError if one fails."""
    unknown = sorted(set(kinds) - set(SECTION_KINDS))
    if unknown:
        raise FormatError(f"file has sections of unknown kind {unknown[0]}")
    if LATENT_SECTION not in kinds:
        raise FormatError("file has no latent section")
    if kinds.count(ALPHA_SECTION) != (h.channels in (2, 4)):
        raise FormatError("alpha section does not match the channel count")
    if FINE_SECTION in kinds and h.version not in (FINE_VERSION, METADATA_VERSION) or \
            FINE_SECTION not in kinds and h.version == FINE_VERSION:
        raise FormatError(f"fine sections are in version {FINE_VERSION} and {METADATA_VERSION} files, and only "
                          f"there; a version {FINE_VERSION} file has them")
    metadata = [kind for kind in kinds if kind in METADATA_KINDS]
    if bool(metadata) != (h.version == METADATA_VERSION):
        raise FormatError(f"metadata sections are in version {METADATA_VERSION} files, and a version "
                          f"{METADATA_VERSION} file has at least one")
    if len(set(metadata)) != len(metadata):
        raise FormatError("file has two metadata sections of one kind")


def unpack(data: bytes, max_pixels: int | None = None,
           reader: str = "decoder") -> tuple[Header, list[tuple[int, bytes]]]:
    """Parse and check a .nic file; every problem is a FormatError with a one-line reason.

    Decoders pass `max_pixels` (`max_pixels()`), the largest image they will allocate;
    without it, only reading the header, any positive size is accepted.
    """
    if len(data) < len(MAGIC) or data[:4] != MAGIC:
        raise FormatError("not a .nic file (bad magic)")
    if len(data) < FIXED.size + COUNT.size + CRC.size:
        raise FormatError("truncated .nic file (shorter than its header)")
    if data[4] not in READABLE:
        raise _unsupported(data[4], reader)
    body, (crc,) = data[:-CRC.size], CRC.unpack(data[-CRC.size:])
    if zlib.crc32(body) != crc:
        raise FormatError("checksum mismatch: the .nic file is damaged or truncated")
    (_, version, flags, quality, channels, bit_depth, orientation, width, height, fold, whash,
     name_len) = FIXED.unpack_from(body)
    pos = FIXED.size
    if pos + name_len + COUNT.size > len(body):
        raise FormatError("truncated .nic header")
    try:
        model = body[pos:pos + name_len].decode("ascii")
    except UnicodeDecodeError:
        raise FormatError("model name in header is not ASCII") from None
    pos += name_len
    (count,) = COUNT.unpack_from(body, pos)
    pos += COUNT.size
    header = Header(model, whash, quality, width, height, channels, bool(flags & FLAG_GREY), bit_depth,
                    orientation, fold, version=version)
    check(header, flags, max_pixels, reader)
    if count > MAX_SECTIONS or pos + count * SECTION.size > len(body):
        raise FormatError(f"header claims {count} sections, more than the file holds")
    header.sections = [SECTION.unpack_from(body, pos + i * SECTION.size) for i in range(count)]
    pos += count * SECTION.size
    if pos + sum(length for _, length in header.sections) != len(body):
        raise FormatError("section lengths do not add up to the file size")
    check_sections(header, [kind for kind, _ in header.sections])
    sections = []
    for kind, length in header.sections:
        sections.append((kind, body[pos:pos + length]))
        pos += length
    return header, sections


def max_file_size(max_pixels: int) -> int:
    """No .nic file within the pixel limit is larger (16 bytes a pixel is 5x a lossless PNG's
    worst case); reading stops there, so a device or a huge file is refused, not swallowed."""
    return 16 * max_pixels + (1 << 20)


def read_bounded(f: BinaryIO, limit: int) -> bytes:
    """The rest of `f`, or a FormatError if that is over `limit` bytes: told by its size before
    anything is read where `f` can seek (a huge file), else by what arrives. Read in chunks, so a
    large bound allocates nothing until bytes arrive (`f.read(limit + 1)` would allocate it all)."""
    too_large = FormatError(f"larger than any .nic file within the pixel limit ({limit} bytes)")
    step = _CHUNK
    if f.seekable():
        here = f.tell()
        end = f.seek(0, os.SEEK_END)
        f.seek(here)
        if end - here > limit:
            raise too_large
        step = end - here + 1  # what is there, in one read
    chunks, size = [], 0
    while chunk := f.read(min(step, limit + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise too_large
    return b"".join(chunks)


def read(path: str | os.PathLike, max_pixels: int) -> bytes:
    """The bytes of a .nic file, refusing what is not a regular file or is larger than any
    .nic file within the pixel limit can be (/dev/zero, a FIFO, a huge file) before reading it."""
    path = Path(path)
    try:
        with open(path, "rb", opener=lambda p, f: os.open(p, f | getattr(os, "O_NONBLOCK", 0))) as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise NicError(f"{path}: not a regular file")
            return read_bounded(f, max_file_size(max_pixels))
    except FormatError as e:
        raise FormatError(f"{path}: {e}") from None
    except FileNotFoundError:
        raise NicError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise NicError(f"{path}: is a directory") from None
    except OSError as e:
        raise NicError(f"{path}: cannot read ({e.strerror})") from None
