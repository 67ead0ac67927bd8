"""PNG with zlib and struct only: writing the decoded image, and reading the alpha section
(an 8-bit greyscale PNG written by Pillow), so that no imaging library is needed.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from nic_decode.errors import FormatError

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (grey, grey+alpha, RGB, RGBA)
_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode(pixels: np.ndarray) -> bytes:
    """(H, W, C) uint8, C = 1..4 -> PNG bytes (filter 0 on every row)."""
    h, w, c = pixels.shape
    rows = np.concatenate([np.zeros((h, 1), dtype=np.uint8), pixels.reshape(h, w * c)], axis=1)
    head = struct.pack(">IIBBBBB", w, h, 8, _COLOUR_TYPES[c], 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", head) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + \
        _chunk(b"IEND", b"")


def _unfilter(raw: bytes, height: int, width: int) -> np.ndarray:
    """Undo PNG's per-row filters of an 8-bit one-channel image."""
    stride = width + 1
    out = np.zeros((height + 1, width), dtype=np.uint8)  # row 0: the zero row above the first
    for y in range(height):
        kind, line = raw[y * stride], np.frombuffer(raw, np.uint8, width, y * stride + 1)
        up = out[y]
        if kind == 0:
            row = line
        elif kind == 1:
            row = np.cumsum(line, dtype=np.uint64).astype(np.uint8)
        elif kind == 2:
            row = line + up
        elif kind in (3, 4):
            row, prev, above = bytearray(width), 0, up.tolist()
            for x, v in enumerate(line.tolist()):
                if kind == 3:
                    prev = (v + ((prev + above[x]) >> 1)) & 255
                else:
                    a, b, c = prev, above[x], above[x - 1] if x else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    prev = (v + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
                row[x] = prev
            row = np.frombuffer(bytes(row), np.uint8)
        else:
            raise FormatError("alpha section is corrupt (unknown PNG filter)")
        out[y + 1] = row
    return out[1:]


def decode_alpha(data: bytes, height: int, width: int) -> np.ndarray:
    """The alpha section: an 8-bit greyscale PNG of the image's size, ending with IEND."""
    if not data.endswith(_END):
        raise FormatError("alpha section is truncated or has data after its end")
    if not data.startswith(SIGNATURE):
        raise FormatError("alpha section is corrupt (not a PNG)")
    pos, head, idat = len(SIGNATURE), None, []
    try:
        while pos < len(data):
            (n,), kind = struct.unpack_from(">I", data, pos), data[pos + 4:pos + 8]
            body = data[pos + 8:pos + 8 + n]
            if len(body) != n or zlib.crc32(kind + body) != struct.unpack_from(">I", data, pos + 8 + n)[0]:
                raise FormatError("alpha section is corrupt (bad PNG chunk)")
            if kind == b"IHDR":
                head = struct.unpack(">IIBBBBB", body)
            elif kind == b"IDAT":
                idat.append(body)
            pos += 12 + n
        if head is None or head[:2] != (width, height) or head[2:4] != (8, 0):
            raise FormatError("alpha section does not match the image")
        if head[6]:
            raise FormatError("alpha section is corrupt (interlaced PNG)")
        inflater = zlib.decompressobj()
        raw = inflater.decompress(b"".join(idat), height * (width + 1) + 1)
        if len(raw) != height * (width + 1) or not inflater.eof:
            raise FormatError("alpha section is corrupt (wrong amount of pixel data)")
    except (struct.error, zlib.error) as e:
        raise FormatError(f"alpha section is corrupt ({e})") from None
    return _unfilter(raw, height, width)
