"""The .nic container: round trip, and every kind of damage caught as a FormatError."""

from __future__ import annotations

import struct
import zlib

import pytest

from nic import container
from nic.container import Header
from nic.errors import FormatError

pytestmark = pytest.mark.fast


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


def header(**fields) -> Header:
    base = dict(model="hyperprior", weights_hash=b"12345678", quality=75, width=64, height=48)
    return Header(**(base | fields))


def with_sections(h: Header) -> list[tuple[int, bytes]]:
    return [(0, b"abcd")] + ([(1, b"alpha")] if h.channels in (2, 4) else [])


LEGAL = {
    "quality": [dict(quality=q) for q in range(1, 101)],
    "channels": [dict(channels=1, grey=True), dict(channels=2, grey=True), dict(channels=3), dict(channels=4)],
    "bit_depth": [dict(bit_depth=8), dict(bit_depth=16), dict(bit_depth=16, channels=1, grey=True, version=1)],
    "orientation": [dict(orientation=o) for o in range(1, 9)],
    "size": [dict(width=1, height=1), dict(width=1 << 26, height=1), dict(width=1, height=1 << 26),
             dict(width=8192, height=8192)],
    "model": [dict(model=m) for m in ("a", "conv-ae", "my_model-2", "x" * 255)],
    "version": [dict(version=1), dict(version=2)],
}


@pytest.mark.parametrize("field", LEGAL)
def test_every_legal_header_value_is_written_and_read_back(field):
    for fields in LEGAL[field]:
        h = header(**fields)
        back, sections = container.unpack(container.pack(h, with_sections(h)))
        assert {k: getattr(back, k) for k in fields} == fields
        assert sections == with_sections(h)


ILLEGAL = [
    (dict(quality=0), "quality 0"), (dict(quality=101), "quality 101"),
    (dict(channels=0), "0 channels"), (dict(channels=5), "5 channels"),
    (dict(channels=1), "grey flag is clear"), (dict(channels=3, grey=True), "grey flag is set"),
    (dict(bit_depth=12), "12-bit"), (dict(bit_depth=16, version=1), "16-bit colour source"),
    (dict(orientation=0), "orientation 0"), (dict(orientation=9), "orientation 9"),
    (dict(width=0), "0x48"),
    (dict(model="../etc"), "not a model name"), (dict(model=""), "not a model name"),
    (dict(fold=64, version=1), "fold 64"),
]


@pytest.mark.parametrize("fields, message", ILLEGAL)
def test_illegal_header_values_are_neither_written_nor_read(fields, message):
    h = header(**fields)
    with pytest.raises(FormatError, match=message):
        container.pack(h, with_sections(h))
    # the same header forged into a file with a valid checksum is refused by the reader
    good = container.pack(header(), [(0, b"abcd")])
    forged = bytearray(good[:-4])
    flags = 1 if h.grey else 0
    struct.pack_into("<BBBBBBIII", forged, 4, h.version, flags, h.quality, h.channels, h.bit_depth,
                     h.orientation, h.width, h.height, h.fold)
    if h.model != "hyperprior":
        name = h.model.encode()
        forged = forged[:30] + bytes([len(name)]) + name + forged[31 + len("hyperprior"):]
    with pytest.raises(FormatError, match=message):
        container.unpack(refresh_crc(bytes(forged)), max_pixels=1 << 26)


def test_the_pixel_limit_is_the_readers():
    h = header(width=1 << 26, height=2)
    data = container.pack(h, with_sections(h))  # encoders check the image against their own limit
    assert container.unpack(data)[0].width == 1 << 26
    with pytest.raises(FormatError, match="67108864x2 pixels"):
        container.unpack(data, max_pixels=1 << 26)


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[:5] + bytes([d[5] | 0x80]) + d[6:], "reserved flag bits"),
    (lambda d: d[:5] + bytes([d[5] | 0x02]) + d[6:], "reserved flag bits"),
    (lambda d: d[:45] + bytes([7]) + d[46:], "unknown kind 7"),  # the first section's kind
    (lambda d: d[:50] + bytes([0]) + d[51:], "alpha section does not match"),  # alpha made latent
])
def test_reserved_bits_and_unknown_sections_are_refused(damage, message):
    h = header(channels=4)
    data = container.pack(h, [(0, b"abcd"), (1, b"alpha")])
    assert data[45] == 0 and data[50] == 1  # the section table starts at 31 + 10 + 4: kinds at 45, 50
    with pytest.raises(FormatError, match=message):
        container.unpack(refresh_crc(damage(data)[:-4]))
