"""The .nic container: round trip, and every kind of damage caught as a FormatError."""

from __future__ import annotations

import struct
import zlib

import pytest

from nic import container
from nic.container import Header
from nic.errors import FormatError


def sample() -> bytes:
    h = Header("hyperprior", b"12345678", 75, 640, 480, channels=4, orientation=6)
    return container.pack(h, [(0, b"abcd" * 10), (0, b"efgh"), (1, b"alpha")])


def test_round_trip():
    h, sections = container.unpack(sample())
    assert (h.model, h.weights_hash, h.quality, h.width, h.height, h.channels, h.orientation) == (
        "hyperprior", b"12345678", 75, 640, 480, 4, 6)
    assert sections == [(0, b"abcd" * 10), (0, b"efgh"), (1, b"alpha")]


def refresh_crc(body: bytes) -> bytes:
    """A damaged file whose checksum was recomputed: the parser's other checks must hold."""
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("damage, message", [
    (lambda d: b"", "bad magic"),
    (lambda d: b"GIF89a" + d[6:], "bad magic"),
    (lambda d: d[:5], "truncated"),
    (lambda d: d[:-7], "checksum"),
    (lambda d: d[:20] + bytes([d[20] ^ 0x10]) + d[21:], "checksum"),
    (lambda d: d[:4] + b"\x07" + d[5:], "version 7"),
    (lambda d: refresh_crc(d[:10] + struct.pack("<II", 100000, 100000) + d[18:-4]), "100000x100000"),
    (lambda d: refresh_crc(d[:10] + struct.pack("<I", 0) + d[14:-4]), "0x480"),
    (lambda d: refresh_crc(d[:6] + b"\x00" + d[7:-4]), "quality 0"),
    (lambda d: refresh_crc(d[:-9]), "do not add up"),
    (lambda d: refresh_crc(d[:41] + struct.pack("<I", 2**31) + d[45:-4]), "sections"),
])
def test_damage_is_reported(damage, message):
    with pytest.raises(FormatError, match=message):
        container.unpack(damage(sample()), max_pixels=1 << 26)
