"""The .nic container: round trip, and every kind of damage caught as a FormatError."""

from __future__ import annotations

import struct
import tracemalloc
import zlib

import pytest
from PIL import Image, UnidentifiedImageError

import nic  # noqa: F401  (registers the Pillow plugin)
from nic import container
from nic.cli import main
from nic.container import Header
from nic.errors import FormatError, NicError
from nic.io import max_pixels

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


def _peak_bytes(action) -> int:
    """The most memory Python allocated while `action` ran (it must raise NicError or return)."""
    tracemalloc.start()
    try:
        try:
            action()
        except NicError:
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_huge_file_is_refused_by_its_size_before_it_is_read(tmp_path):
    huge = tmp_path / "huge.nic"
    with open(huge, "wb") as f:  # sparse: 2 GB that take no disk
        f.write(container.MAGIC)
        f.truncate(2 << 30)
    with pytest.raises(FormatError, match="huge.nic: larger than any .nic file"):
        container.read(huge, 1 << 26)
    assert _peak_bytes(lambda: container.read(huge, 1 << 26)) < 1 << 20
    with pytest.raises(UnidentifiedImageError, match="larger than any .nic file"):
        Image.open(huge)
    assert _peak_bytes(lambda: pytest.raises(UnidentifiedImageError, Image.open, huge)) < 1 << 20


def test_a_large_pixel_limit_allocates_nothing(tmp_path, monkeypatch):
    """The read bound follows the pixel limit, but only the bytes present are ever allocated."""
    small = tmp_path / "small.nic"
    small.write_bytes(sample())
    for limit in (1 << 31, 1 << 36):
        assert _peak_bytes(lambda limit=limit: container.read(small, limit)) < 1 << 20
        assert container.read(small, limit) == sample()
    monkeypatch.setenv("NIC_MAX_PIXELS", str(1 << 31))
    assert Image.open(small).size == (640, 480)
    for bad in (str(1 << 37), "9" * 30, "0", "-5", "1e9"):
        monkeypatch.setenv("NIC_MAX_PIXELS", bad)
        with pytest.raises(NicError, match=f"NIC_MAX_PIXELS must be .*got '{bad}'"):
            max_pixels()


def test_cli_info_with_a_large_pixel_limit(tmp_path, capsys, monkeypatch):
    (tmp_path / "small.nic").write_bytes(sample())
    monkeypatch.setenv("NIC_MAX_PIXELS", str(1 << 31))
    assert main(["info", str(tmp_path / "small.nic")]) == 0
    assert "640x480" in capsys.readouterr().out
    monkeypatch.setenv("NIC_MAX_PIXELS", "9" * 30)
    assert main(["info", str(tmp_path / "small.nic")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nic: error: NIC_MAX_PIXELS must be from 1 to"), err
