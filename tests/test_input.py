"""What nic accepts as input, and how: every file that compress writes decodes; ambiguous
samples are refused, not guessed; colour profiles, frames and bit depth are handled aloud."""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, features

import nic
from nic import container
from nic.errors import NicError
from nic.eval.metrics import psnr
from nic.io import read_image, read_image_bytes
from tests.conftest import DATA, run_nic
from tests.icc import WIDE_LINEAR


def jpeg_with_orientation(photo: np.ndarray, value: int) -> Image.Image:
    exif = Image.Exif()
    exif[0x0112] = value
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="JPEG", quality=95, exif=exif)
    return Image.open(io.BytesIO(buf.getvalue()))


@pytest.mark.fast
@pytest.mark.parametrize("value", [0, 1, 3, 6, 8, 9, 300, 65535])
def test_any_exif_orientation_gives_a_file_that_decodes(photo, value):
    small = np.ascontiguousarray(photo[:40, :56])
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        data = nic.compress(jpeg_with_orientation(small, value), quality=30)
    header = container.unpack(data)[0]
    out = nic.decompress(data)
    if 1 <= value <= 8:
        assert header.orientation == value and not said
        assert out.size == ((40, 56) if value >= 5 else (56, 40))
    else:  # not a valid orientation: coded as stored, and said so
        assert header.orientation == 1 and out.size == (56, 40)
        assert any(f"EXIF orientation {value}" in str(w.message) for w in said)


def test_cli_codes_a_bad_orientation_with_a_warning(tmp_path, photo):
    jpeg_with_orientation(photo, 0).save(tmp_path / "o.jpg", exif=jpeg_with_orientation(photo, 0).getexif())
    r = run_nic("compress", "o.jpg", cwd=tmp_path)
    assert r.returncode == 0 and "EXIF orientation 0 is not a valid value" in r.stderr
    assert run_nic("decompress", "o.nic", cwd=tmp_path).returncode == 0


@pytest.mark.fast
def test_arrays_are_taken_by_documented_rules(photo):
    as_uint8 = np.asarray(nic.decompress(nic.compress(photo, quality=60)))
    with pytest.raises(NicError, match=r"float array has values 0\.\.255: nic takes floats in \[0, 1\]"):
        nic.compress(photo.astype(np.float32))
    with pytest.raises(NicError, match="non-finite"):
        nic.compress(np.full((8, 8), np.nan))
    with pytest.raises(NicError, match=r"int32 array has values -1\.\.70000"):
        nic.compress(np.array([[-1, 70000]], dtype=np.int32))
    assert nic.compress(photo.astype(np.int64), quality=60) == nic.compress(photo, quality=60)
    with pytest.warns(UserWarning, match="16-bit array reduced to 8 bits"):
        deep = nic.compress(photo.astype(np.uint16) * 257, quality=60)
    assert container.unpack(deep)[0].bit_depth == 16
    assert np.array_equal(np.asarray(nic.decompress(deep)), as_uint8)
    mask = photo[:, :, 0] > 100
    back = np.asarray(nic.decompress(nic.compress(mask, quality=90)))
    assert abs(back.mean() - mask.mean() * 255) < 5  # True is white, not 1/255


@pytest.mark.fast
def test_float_and_int_tiffs_beyond_their_range_are_refused(tmp_path, photo):
    grey = photo.mean(axis=2)
    Image.fromarray((grey / 255).astype(np.float32), "F").save(tmp_path / "unit.tif")
    Image.fromarray((grey * 4).astype(np.float32), "F").save(tmp_path / "wide.tif")
    Image.fromarray((grey * 400).astype(np.int32), "I").save(tmp_path / "int.tif")
    assert psnr(np.rint(grey).astype(np.uint8), read_image(tmp_path / "unit.tif").pixels[:, :, 0]) > 50
    with pytest.raises(NicError, match=r"wide.tif: a float image has values .*: nic takes floats in \[0, 1\]"):
        read_image(tmp_path / "wide.tif")
    with pytest.raises(NicError, match="int.tif: a 32-bit integer image has values"):
        read_image(tmp_path / "int.tif")


def managed(img: Image.Image) -> np.ndarray:
    """What a colour-managed viewer shows: the pixels through their profile, in sRGB."""
    icc = img.info.get("icc_profile")
    if not icc:
        return np.asarray(img.convert("RGB"))
    src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    return np.asarray(ImageCms.profileToProfile(img.convert("RGB"), src, ImageCms.createProfile("sRGB"),
                                                outputMode="RGB"))


@pytest.mark.parametrize("strip", [[], ["--strip"]])
def test_an_rgb_profile_is_kept_with_pixels_in_its_space_or_applied_when_stripped(tmp_path, photo, strip):
    Image.fromarray(photo).save(tmp_path / "wide.png", icc_profile=WIDE_LINEAR)
    shown = managed(Image.open(tmp_path / "wide.png"))
    assert psnr(shown, photo) < 15  # the profile matters: ignoring it changes the colours a lot
    assert run_nic("compress", "wide.png", "-q", "90", *strip, cwd=tmp_path).returncode == 0
    assert run_nic("decompress", "wide.nic", "-o", "back.png", cwd=tmp_path).returncode == 0
    back = Image.open(tmp_path / "back.png")
    assert back.info.get("icc_profile") == (None if strip else WIDE_LINEAR)
    assert psnr(shown, managed(back)) > 28
    if not strip:  # the pixels themselves were coded as they were, in the profile's space
        assert psnr(np.asarray(back), photo) > 28


@pytest.mark.fast
def test_an_srgb_profile_changes_nothing(photo):
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="PNG",
                                icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    # the profile itself is kept as metadata (nic/metadata.py); stripped, the bytes are the array's
    assert nic.compress(Image.open(buf), quality=50, strip=True) == nic.compress(photo, quality=50)


def test_only_the_first_frame_is_coded_and_that_is_said(tmp_path, photo):
    frames = [Image.fromarray(photo), Image.fromarray(photo[::-1].copy())]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    r = run_nic("compress", "anim.gif", cwd=tmp_path)
    assert r.returncode == 0 and "anim.gif: image has 2 frames: only the first is coded" in r.stderr


def png16_rgb(a: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (Pillow cannot write one)."""
    h, w, _ = a.shape
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_sixteen_bit_rgb_png_warns(tmp_path, photo):
    (tmp_path / "deep.png").write_bytes(png16_rgb(photo.astype(np.uint16) * 257))
    r = run_nic("compress", "deep.png", cwd=tmp_path)
    assert r.returncode == 0 and "deep.png: 16-bit RGB image reduced to 8 bits per channel" in r.stderr
    assert container.unpack((tmp_path / "deep.nic").read_bytes())[0].bit_depth == 16


def test_devices_and_fifos_are_refused_at_once(tmp_path):
    Image.open(DATA / "kodim05-crop.png").save(tmp_path / "photo.png")
    os.mkfifo(tmp_path / "fifo.png")
    os.mkfifo(tmp_path / "fifo.nic")
    for args, needle in [(("decompress", "/dev/zero", "-o", "x.png"), "/dev/zero: not a regular file"),
                         (("info", "/dev/zero"), "/dev/zero: not a regular file"),
                         (("compress", "fifo.png", "-o", "x.nic"), "fifo.png: not a regular file"),
                         (("decompress", "fifo.nic", "-o", "x.png"), "fifo.nic: not a regular file")]:
        r = run_nic(*args, cwd=tmp_path)
        assert r.returncode == 1 and needle in r.stderr, r.stderr


@pytest.mark.fast
def test_api_arguments_are_checked(photo):
    for bad in (10**6, "photo.nic", None, [1, 2, 3]):
        with pytest.raises(NicError, match="decompress takes the bytes of a .nic file"):
            nic.decompress(bad)
    for quality in (True, False, 7.0, "75"):
        with pytest.raises(NicError, match="quality must be an integer"):
            nic.compress(photo, quality=quality)
    with pytest.raises(NicError, match="target bpp must be positive"):
        nic.compress(photo, bpp=True)
    with pytest.raises(NicError, match="cannot compress a str"):
        nic.compress("photo.png")


@pytest.mark.fast
def test_the_api_honours_the_pixel_limit(photo, monkeypatch):
    monkeypatch.setenv("NIC_MAX_PIXELS", "1000")
    with pytest.raises(NicError, match="over the limit of 1000 pixels"):
        nic.compress(photo)
    with pytest.raises(NicError, match="over the limit of 1000 pixels"):
        nic.compress(Image.fromarray(photo))


def test_big_inputs_are_bounded(tmp_path):
    # a .nic file can be no larger than the pixel limit allows: reading stops there
    env = dict(os.environ, NIC_MAX_PIXELS="1000")
    Path(tmp_path / "big.nic").write_bytes(b"\x89NIC" + b"\x00" * (16 * 1000 + (1 << 20)))
    r = run_nic("info", "big.nic", cwd=tmp_path, env=env)
    assert r.returncode == 1 and "larger than any .nic file" in r.stderr


def _png(img: Image.Image, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **options)
    return buf.getvalue()


@pytest.mark.fast
def test_a_colour_key_is_kept_as_alpha(photo):
    keyed = photo.copy()
    keyed[:8] = (1, 2, 3)  # 8 rows of the key colour
    rgb = read_image_bytes(_png(Image.fromarray(keyed), transparency=(1, 2, 3)), "rgb.png")
    assert rgb.alpha is not None and (rgb.alpha == 0).sum() == 8 * 128 and rgb.pixels.shape[2] == 3
    grey = Image.fromarray(keyed).convert("L")
    key = grey.getpixel((0, 0))
    got = read_image_bytes(_png(grey, transparency=key), "grey.png")
    assert got.alpha is not None and np.array_equal(got.alpha == 0, np.asarray(grey) == key)
    bilevel = grey.point(lambda v: 255 * (v > 128)).convert("1")
    got = read_image_bytes(_png(bilevel, transparency=0), "bilevel.png")
    assert got.alpha is not None and np.array_equal(got.alpha == 0, ~np.asarray(bilevel))
    deep = (np.asarray(grey).astype(np.uint16) * 257)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = read_image_bytes(_png(Image.fromarray(deep), transparency=key * 257), "deep.png")
    assert got.alpha is not None and np.array_equal(got.alpha == 0, deep == key * 257)
    back = nic.decompress(nic.compress(Image.open(io.BytesIO(_png(Image.fromarray(keyed), transparency=(1, 2, 3))))))
    assert back.mode == "RGBA" and (np.asarray(back)[:8, :, 3] == 0).all()


@pytest.mark.fast
def test_premultiplied_and_empty_images_through_the_api(photo):
    rgba = np.dstack([photo, np.full(photo.shape[:2], 128, np.uint8)])
    for mode, want in (("RGBa", "RGBA"), ("La", "LA")):
        img = Image.fromarray(rgba, "RGBA").convert("LA" if mode == "La" else "RGBA").convert(mode)
        back = nic.decompress(nic.compress(img, quality=30))
        assert back.mode == want and (np.asarray(back)[:, :, -1] == 128).all()
    for size in ((0, 0), (0, 5), (5, 0)):
        with pytest.raises(NicError, match=f"cannot code an image of {size[0]}x{size[1]} pixels"):
            nic.compress(Image.new("RGB", size))


# An EXIF block whose tag 0x0106 (a SHORT) holds text, with orientation 6: Pillow's exif_transpose
# fails rewriting it (struct.error), yet the pixels are fine.
BAD_EXIF = bytes.fromhex("4578696600004d4d002a000000080003010f00020000000443616d000112000300000001000600"
                         "0001060002000000140000003200000000323032303a30313a30312030303a30303a303000")


def _damaged(photo: np.ndarray, fmt: str) -> bytes:
    """A TIFF whose first IFD claims 255 entries (Pillow: TypeError "Missing dimensions"), or an
    AVIF with a byte of its item table zeroed (its plugin: RuntimeError)."""
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format=fmt)
    data = bytearray(buf.getvalue())
    if fmt == "TIFF":
        data[8] = 0xFF
    else:
        data[81] = 0
    return bytes(data)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "AVIF", "TIFF"])
def test_damaged_files_are_one_line_errors(tmp_path, photo, fmt):
    if not features.check(fmt.lower().replace("jpeg", "jpg").replace("tiff", "libtiff")):
        pytest.skip(f"this Pillow has no {fmt}")
    if fmt in ("JPEG", "WEBP"):
        buf = io.BytesIO()
        Image.fromarray(photo).save(buf, format=fmt, exif=BAD_EXIF)
        data = buf.getvalue()
    else:
        data = _damaged(photo, fmt)
    (tmp_path / f"bad.{fmt.lower()}").write_bytes(data)
    r = run_nic("compress", f"bad.{fmt.lower()}", cwd=tmp_path)
    if fmt in ("JPEG", "WEBP"):  # only the EXIF is damaged: the photo is coded, turned upright
        assert r.returncode == 0, r.stderr
        assert nic.decompress((tmp_path / "bad.nic").read_bytes()).size == (96, 128)
    else:
        assert r.returncode == 1 and "internal error" not in r.stderr, r.stderr
        assert f"bad.{fmt.lower()}: " in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / "bad.nic").exists()
