"""The Pillow plugin, exercised only through Pillow's own calls on real photos."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps, UnidentifiedImageError

import nic
from nic import container
from nic.eval.metrics import psnr
from nic.models import registry

from .conftest import DATA

pytestmark = pytest.mark.fast


@pytest.fixture
def photo_img() -> Image.Image:
    with Image.open(DATA / "kodim05-crop.png") as img:
        return img.convert("RGB")


def _with_alpha(img: Image.Image, mode: str) -> Image.Image:
    img = img.convert(mode[:-1] if mode.endswith("A") else mode)
    if mode.endswith("A"):
        w, h = img.size
        img.putalpha(Image.fromarray((np.arange(w * h) % 251).reshape(h, w).astype(np.uint8)))
    return img


def test_registered_with_pillow():
    assert Image.registered_extensions()[".nic"] == "NIC"
    assert Image.MIME["NIC"] == "image/x-nic"
    assert "NIC" in Image.SAVE and "NIC" in Image.OPEN


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA"])
def test_save_open_load_in_the_source_mode(tmp_path, photo_img, mode):
    src = _with_alpha(photo_img, mode)
    path = tmp_path / "x.nic"
    src.save(path, quality=80)
    assert path.read_bytes()[:4] == container.MAGIC
    with Image.open(path) as img:
        assert (img.format, img.mode, img.size) == ("NIC", mode, src.size)
        assert img.info == {"model": registry.DEFAULT_MODEL, "quality": 80}
        img.load()
        pixels = np.asarray(img)
    # the same pixels as the Python API decodes, and close to the source
    assert np.array_equal(pixels, np.asarray(nic.decompress(path.read_bytes())))
    colour = "L" if mode.startswith("L") else "RGB"
    assert psnr(np.asarray(src.convert(colour)), np.asarray(Image.fromarray(pixels, mode).convert(colour))) > 28
    if mode.endswith("A"):
        assert np.array_equal(pixels[..., -1], np.asarray(src)[..., -1])  # alpha is lossless


def test_size_and_mode_come_from_the_header_without_decoding(tmp_path, photo_img):
    # A file whose header names weights nobody has: it opens (size, mode), it cannot decode.
    data = bytearray(nic.compress(photo_img))
    data[22:30] = b"\xee" * 8  # the weights hash (docs/FORMAT.md)
    data[-4:] = struct.pack("<I", zlib.crc32(bytes(data[:-4])))
    path = tmp_path / "other-weights.nic"
    path.write_bytes(bytes(data))
    with Image.open(path) as img:
        assert (img.size, img.mode) == (photo_img.size, "RGB")
        with pytest.raises(OSError, match="other weights"):
            img.load()


def test_quality_bpp_and_model_options(photo_img):
    def saved(**options) -> bytes:
        buf = io.BytesIO()
        photo_img.save(buf, format="NIC", **options)
        return buf.getvalue()

    assert saved() == nic.compress(photo_img, quality=75)
    assert len(saved(quality=20)) < len(saved(quality=90))
    pixels = photo_img.width * photo_img.height
    assert saved(bpp=0.8) == nic.compress(photo_img, bpp=0.8)
    assert len(saved(bpp=0.8)) * 8 / pixels <= 0.8
    data = saved(model="conv-ae", quality=60)
    assert data == nic.compress(photo_img, quality=60, model="conv-ae")
    with Image.open(io.BytesIO(data)) as img:
        assert img.info == {"model": "conv-ae", "quality": 60}
        assert psnr(np.asarray(photo_img), np.asarray(img.convert("RGB"))) > 20  # conv-ae: 21.1 dB here


@pytest.mark.parametrize("options, reason", [({"quality": 0}, "quality must be"), ({"bpp": -1.0}, "bpp must be"),
                                             ({"model": "no-such-model"}, "no-such-model"),
                                             ({"quality": 60, "bpp": 0.5}, "give quality or bpp, not both")])
def test_bad_save_options_are_value_errors_and_leave_no_file(tmp_path, photo_img, options, reason):
    path = tmp_path / "x.nic"
    with pytest.raises(ValueError, match=reason):
        photo_img.save(path, **options)
    assert not path.exists()


def test_pillow_operations_on_an_opened_file(tmp_path, photo_img):
    path = tmp_path / "x.nic"
    photo_img.save(path, quality=70)
    with Image.open(path) as img:
        thumb = img.copy()
        thumb.thumbnail((64, 64))
        assert thumb.size == (64, 48) and thumb.mode == "RGB"
        grey = img.convert("L")
        assert grey.mode == "L" and grey.size == img.size
        upright = ImageOps.exif_transpose(img)  # nic applied the EXIF orientation when coding
        assert upright.size == img.size and np.array_equal(np.asarray(upright), np.asarray(img))
        img.save(tmp_path / "x.png")
    with Image.open(tmp_path / "x.png") as png:
        assert png.format == "PNG" and png.size == photo_img.size
        assert psnr(np.asarray(photo_img), np.asarray(png)) > 28


def test_exif_orientation_is_applied_when_saving(tmp_path, photo_img):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    photo_img.save(tmp_path / "rotated.jpg", quality=95, exif=exif)
    with Image.open(tmp_path / "rotated.jpg") as jpg:
        jpg.save(tmp_path / "x.nic")
    with Image.open(tmp_path / "x.nic") as img:
        assert img.size == (photo_img.height, photo_img.width)
        assert ImageOps.exif_transpose(img).size == img.size


@pytest.mark.parametrize("damage, error, reason", [
    (lambda d: d[:-7], UnidentifiedImageError, "checksum mismatch"),
    (lambda d: d[:9], UnidentifiedImageError, "truncated"),
    (lambda d: d[:4] + b"\x09" + d[5:], UnidentifiedImageError, "version 9"),
])
def test_damaged_files_raise_pillows_errors_with_nics_reason(tmp_path, photo_img, damage, error, reason):
    path = tmp_path / "bad.nic"
    path.write_bytes(damage(nic.compress(photo_img)))
    with pytest.raises(error, match=reason) as caught:
        Image.open(path)
    assert "\n" not in str(caught.value) and "bad.nic" in str(caught.value)


def test_a_damaged_section_with_a_valid_checksum_fails_on_load(tmp_path, photo_img):
    # The container is sound (lengths, checksum) but the alpha section, the last, is garbage.
    data = bytearray(nic.compress(_with_alpha(photo_img, "RGBA")))
    _, sections = container.unpack(bytes(data))
    assert sections[-1][0] == container.ALPHA_SECTION
    data[-4 - len(sections[-1][1]):-4] = bytes(len(sections[-1][1]))
    data[-4:] = struct.pack("<I", zlib.crc32(bytes(data[:-4])))
    path = tmp_path / "bad.nic"
    path.write_bytes(bytes(data))
    with Image.open(path) as img:
        assert (img.size, img.mode) == (photo_img.size, "RGBA")
        with pytest.raises(OSError, match="cannot decode .nic file: alpha section is (corrupt|truncated)"):
            img.load()


def test_other_formats_are_not_taken_for_nic():
    with Image.open(DATA / "kodim23-crop.png") as img:
        assert img.format == "PNG"
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(b"\x89NI" + bytes(60)))
