"""Mutations of valid .nic files for fuzzing the parser and the decoders.

Shared by the short fuzz test (tests/test_fuzz.py) and the long run (benchmarks/fuzz.py).
Half the byte-level mutants get a fresh CRC-32, so they pass the checksum and reach the
header checks, the model and the entropy decoder instead of all stopping at the checksum.
Two kinds go further and stay valid containers whose one latent section was cut short or
emptied (table and checksum rewritten): those must never decode, only a format error is right.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

# Offsets of the fixed header fields (docs/FORMAT.md).
FIELDS = {"version": (4, "<B"), "flags": (5, "<B"), "quality": (6, "<B"), "channels": (7, "<B"),
          "bit_depth": (8, "<B"), "orientation": (9, "<B"), "width": (10, "<I"), "height": (14, "<I"),
          "fold": (18, "<I"), "name_length": (30, "<B")}
KINDS = ("truncate", "bit flips", "header field", "section table", "random payload", "appended bytes",
         "random file", "cut section", "emptied section")
MUST_FAIL = {"cut section", "emptied section"}


@dataclass
class Mutant:
    data: bytes
    kind: str

    @property
    def must_fail(self) -> bool:
        """A container that is valid but one of whose sections is missing data."""
        return self.kind in MUST_FAIL


def _section_table_offset(data: bytes) -> int:
    return 31 + data[30] + 4


def _cut_section(data: bytes, rng: np.random.Generator, empty: bool) -> bytes:
    from nic import container

    header, sections = container.unpack(data)
    latent = [i for i, (kind, _) in enumerate(sections) if kind == container.LATENT_SECTION]
    i = latent[rng.integers(len(latent))]
    kind, body = sections[i]
    if empty or len(body) < 8:
        body = b""
    else:
        words = int(rng.integers(1, len(body) // 4))  # at least one word gone, at least one left
        body = body[4 * words:] if rng.random() < 0.5 else body[:-4 * words]
    sections[i] = (kind, body)
    return container.pack(header, sections)


def mutate(data: bytes, rng: np.random.Generator) -> Mutant:
    """One random mutation: truncation, bit flips, a huge or odd field, garbage sections,
    a section cut short or emptied inside a valid container..."""
    kind = KINDS[rng.integers(len(KINDS))]
    if kind in MUST_FAIL:
        return Mutant(_cut_section(data, rng, kind == "emptied section"), kind)
    b = bytearray(data)
    if kind == "truncate":
        b = b[: rng.integers(0, len(b))]
    elif kind == "bit flips":
        for _ in range(rng.integers(1, 17)):
            i = rng.integers(len(b))
            b[i] ^= 1 << rng.integers(8)
    elif kind == "header field":  # set to an extreme or random value
        name = list(FIELDS)[rng.integers(len(FIELDS))]
        off, fmt = FIELDS[name]
        top = 255 if fmt == "<B" else 2**32 - 1
        struct.pack_into(fmt, b, off, int(rng.choice([0, 1, 2, top, top // 2, rng.integers(0, top)])))
    elif kind == "section table":  # a section count or length set to a huge or random value
        off = _section_table_offset(data)
        if rng.random() < 0.3:
            struct.pack_into("<I", b, off - 4, int(rng.choice([0, 2**16, 2**32 - 1, rng.integers(0, 64)])))
        else:
            count = struct.unpack_from("<I", data, off - 4)[0]
            i = rng.integers(max(1, count))
            struct.pack_into("<I", b, off + 5 * i + 1, int(rng.choice([0, 2**31, 2**32 - 1, rng.integers(0, 4096)])))
    elif kind == "random payload":  # random bytes after the header, in place of the payload
        off = _section_table_offset(data) + 5 * struct.unpack_from("<I", data, _section_table_offset(data) - 4)[0]
        b[off:-4] = rng.integers(0, 256, len(b) - 4 - off, dtype=np.uint8).tobytes()
    elif kind == "appended bytes":
        b[-4:-4] = rng.integers(0, 256, rng.integers(1, 64), dtype=np.uint8).tobytes()
    else:  # entirely random bytes, sometimes behind a valid magic
        b = bytearray(rng.integers(0, 256, rng.integers(0, 256), dtype=np.uint8).tobytes())
        if rng.random() < 0.5:
            b[:5] = data[:5]
    if len(b) >= 8 and rng.random() < 0.5:
        body = bytes(b[:-4])
        b[-4:] = struct.pack("<I", zlib.crc32(body))
    return Mutant(bytes(b), kind)


def with_metadata(pixels: np.ndarray):
    """A PIL image of `pixels` carrying EXIF (with GPS) and XMP, so seeds have metadata sections."""
    from PIL import Image

    img = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif.get_ifd(0x8825)[1] = "N"
    img.info.update(exif=exif.tobytes(), xmp=b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>" + b" " * 200 + b"</x:xmpmeta>")
    return img


def decode_with(decoder: str, data: bytes) -> np.ndarray:
    """Decode with nic (`nic`: its default fast path; `nic-exact`) or the torch-free
    `nic-decode` (exact), as an array: what the fuzz runs compare."""
    if decoder == "nic-decode":
        import nic_decode

        return nic_decode.decode(data)
    import nic

    return np.asarray(nic.decompress(data, exact=decoder == "nic-exact"))


def outcome(data: bytes, decoder: str = "nic") -> str:
    """Decode one input: 'decoded', 'format error' or 'nic error'. Anything else is raised:
    that is what fuzzing is for. A message must be one non-empty line."""
    from nic_decode.errors import FormatError, NicError

    try:
        decode_with(decoder, data)
        return "decoded"
    except NicError as e:
        if not str(e) or "\n" in str(e):
            raise AssertionError(f"bad error message: {e!r}") from e
        return "format error" if isinstance(e, FormatError) else "nic error"
