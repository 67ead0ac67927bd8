"""EXIF, XMP and the ICC profile kept through compress and decompress (nic/metadata.py), stripped
on request, and never able to damage the pixels."""

from __future__ import annotations

import io
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

import nic
from nic import codec, container, metadata
from nic.batch_plan import decide
from nic.errors import FormatError
from nic.files import compress_file, decompress_file

from .conftest import DATA, run_nic
from .icc import DISPLAY_P3

MAKE, MODEL, DATE = 0x010F, 0x0110, 0x9003
EXIF_IFD, GPS_IFD, ORIENTATION = 0x8769, 0x8825, 0x0112
GPS = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 1.0)}
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
       b'xmlns:exif="http://ns.adobe.com/exif/1.0/" tiff:Orientation="6" exif:GPSLatitude="52,31.2N">'
       b"<exif:GPSLongitude>13,24.0E</exif:GPSLongitude>"
       b"<dc:creator><rdf:Seq><rdf:li>Ada Lovelace</rdf:li></rdf:Seq></dc:creator></rdf:Description></rdf:RDF>"
       b"</x:xmpmeta>")
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _tagged(path: Path) -> Path:
    """A JPEG of a shipped crop, stored sideways (orientation 6), with camera, date, GPS, XMP and a profile."""
    exif = Image.Exif()
    exif.update({MAKE: "Canon", MODEL: "EOS 5D", ORIENTATION: 6})
    exif.get_ifd(EXIF_IFD)[DATE] = "2020:01:02 03:04:05"
    exif.get_ifd(GPS_IFD).update(GPS)
    Image.open(DATA / "kodim23-crop.png").convert("RGB").save(path, exif=exif, xmp=XMP, icc_profile=ICC, quality=95)
    return path


@pytest.fixture(scope="module")
def coded(tmp_path_factory) -> dict[str, Path]:
    """The tagged JPEG compressed three ways: keeping everything, --strip and --strip-gps."""
    folder = tmp_path_factory.mktemp("metadata")
    src = _tagged(folder / "photo.jpg")
    out = {"src": src}
    for name, options in (("kept", {}), ("strip", {"strip": True}), ("gps", {"strip_gps": True})):
        out[name] = folder / f"{name}.nic"
        compress_file(src, out[name], **options)
    return out


def _sections(path: Path) -> tuple[container.Header, dict[int, bytes]]:
    header, sections = container.unpack(path.read_bytes())
    return header, dict(sections)


def _decoded(path: Path, tmp_path: Path, suffix: str = ".png") -> Image.Image:
    out = tmp_path / f"{path.stem}{suffix}"
    decompress_file(path, out)
    return Image.open(out)


@pytest.mark.fast
def test_png_keeps_exif_and_xmp_with_orientation_1(coded, tmp_path):
    header, sections = _sections(coded["kept"])
    assert header.version == container.METADATA_VERSION and header.orientation == 6
    assert set(container.METADATA_KINDS) <= set(sections)
    img = _decoded(coded["kept"], tmp_path)
    exif = img.getexif()
    assert (exif[MAKE], exif[MODEL], exif[ORIENTATION]) == ("Canon", "EOS 5D", 1)
    assert exif.get_ifd(EXIF_IFD)[DATE] == "2020:01:02 03:04:05"
    assert exif.get_ifd(GPS_IFD) == GPS
    assert b"Ada Lovelace" in img.info["xmp"] and b'tiff:Orientation="1"' in img.info["xmp"]
    assert img.size == (80, 100)  # stored upright


@pytest.mark.fast
@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tiff"])
def test_the_icc_profile_is_stored_and_attached_to_the_decoded_file(coded, tmp_path, suffix):
    assert metadata.unpack(_sections(coded["kept"])[1][container.ICC_SECTION], "ICC") == ICC
    assert _decoded(coded["kept"], tmp_path, suffix).info["icc_profile"] == ICC
    assert "icc_profile" not in _decoded(coded["strip"], tmp_path, suffix).info
    assert Image.open(coded["kept"]).info["icc_profile"] == ICC  # the Pillow plugin
    assert nic.decompress(coded["kept"].read_bytes()).info["icc_profile"] == ICC


def _lab(img: Image.Image) -> np.ndarray:
    """The image read through its profile (sRGB if none), as CIE Lab (L 0..100, a and b signed)."""
    icc = img.info.get("icc_profile")
    src = ImageCms.ImageCmsProfile(io.BytesIO(icc)) if icc else ImageCms.createProfile("sRGB")
    lab = np.asarray(ImageCms.profileToProfile(img.convert("RGB"), src, ImageCms.createProfile("LAB"),
                                               outputMode="LAB"))
    ab = lab[..., 1:].view(np.int8).astype(np.float64)  # Pillow stores a and b as signed bytes
    return np.concatenate([lab[..., :1] * 100 / 255, ab], axis=-1)


def _delta_e(a: Image.Image, b: Image.Image) -> float:
    """Mean CIE76 colour difference."""
    return float(np.sqrt(((_lab(a) - _lab(b)) ** 2).sum(axis=-1)).mean())


@pytest.mark.fast
def test_display_p3_keeps_the_colours_srgb_clips():
    """A shipped crop pushed to P3's saturated extremes: coded in its own space it stays within
    a small ΔE; converted to sRGB (the old path, and what --strip still does) it does not."""
    crop = np.asarray(Image.open(DATA / "kodim23-crop.png").convert("RGB")).astype(np.float64)
    grey = crop.mean(axis=2, keepdims=True)
    img = Image.fromarray(np.clip(grey + 3 * (crop - grey), 0, 255).astype(np.uint8))
    img.info["icc_profile"] = DISPLAY_P3
    kept = nic.decompress(nic.compress(img, quality=90))
    old = nic.decompress(nic.compress(img, quality=90, strip=True))
    assert kept.info["icc_profile"] == DISPLAY_P3 and "icc_profile" not in old.info
    kept_de, old_de = _delta_e(img, kept), _delta_e(img, old)
    print(f"mean ΔE76 at quality 90: kept {kept_de:.2f}, converted to sRGB {old_de:.2f}")
    assert kept_de < 3.5 and old_de > kept_de + 1.5  # measured: 2.9 and 5.0


@pytest.mark.fast
def test_a_profile_section_that_cannot_describe_the_pixels_is_skipped(coded):
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    good = codec.decode(coded["kept"].read_bytes())
    with pytest.warns(UserWarning, match="ICC profile section is not a RGB profile: skipped"):
        bad = codec.decode(_with_section(coded["kept"], container.ICC_SECTION, metadata.pack(lab)))
    assert np.array_equal(bad.pixels, good.pixels) and bad.metadata.icc is None


@pytest.mark.fast
@pytest.mark.parametrize("suffix", [".jpg", ".webp", ".tiff"])
def test_other_output_formats_keep_exif_and_xmp(coded, tmp_path, suffix):
    img = _decoded(coded["kept"], tmp_path, suffix)
    exif = img.getexif()
    assert (exif[MAKE], exif.get(ORIENTATION)) == ("Canon", 1) and exif.get_ifd(GPS_IFD) == GPS
    assert b"Ada Lovelace" in img.info["xmp"]


@pytest.mark.fast
def test_strip_keeps_nothing_and_writes_an_older_version(coded, tmp_path):
    header, sections = _sections(coded["strip"])
    assert header.version != container.METADATA_VERSION and not set(sections) & set(container.METADATA_KINDS)
    img = _decoded(coded["strip"], tmp_path)
    assert not img.getexif() and "xmp" not in img.info


@pytest.mark.fast
def test_strip_gps_drops_only_the_location(coded, tmp_path):
    img = _decoded(coded["gps"], tmp_path)
    exif = img.getexif()
    assert exif[MAKE] == "Canon" and exif.get_ifd(EXIF_IFD)[DATE] == "2020:01:02 03:04:05"
    assert GPS_IFD not in exif and not exif.get_ifd(GPS_IFD)
    assert b"Ada Lovelace" in img.info["xmp"] and b"GPS" not in img.info["xmp"]


@pytest.mark.fast
def test_stripping_changes_no_pixel(coded, tmp_path):
    pixels = [np.asarray(_decoded(coded[k], tmp_path)) for k in ("kept", "strip", "gps")]
    assert np.array_equal(pixels[0], pixels[1]) and np.array_equal(pixels[0], pixels[2])


@pytest.mark.fast
def test_an_image_without_metadata_makes_the_same_bytes_as_before(photo2):
    """No metadata, no section and no new version: the bytes are those of an array, which never had any."""
    img = Image.open(DATA / "kodim23-crop.png")
    data = nic.compress(img)
    header, sections = container.unpack(data)
    assert header.version in (container.VERSION, container.FINE_VERSION)
    assert not {kind for kind, _ in sections} & set(container.METADATA_KINDS)
    assert data == nic.compress(photo2)


@pytest.mark.fast
def test_python_api_and_pillow_plugin(coded, tmp_path):
    src = Image.open(coded["src"])
    image = nic.decompress(nic.compress(src, strip_gps=True))
    assert image.getexif()[MAKE] == "Canon" and GPS_IFD not in image.getexif()
    assert b"Ada Lovelace" in image.info["xmp"]
    opened = Image.open(coded["kept"])
    assert opened.info["exif"].startswith(metadata.EXIF_PREFIX) and b"Ada Lovelace" in opened.info["xmp"]
    src.save(tmp_path / "s.nic", strip=True)
    assert "exif" not in Image.open(tmp_path / "s.nic").info


def _with_section(path: Path, kind: int, data: bytes) -> bytes:
    header, sections = container.unpack(path.read_bytes())
    return container.pack(header, [(k, data if k == kind else s) for k, s in sections])


@pytest.mark.fast
@pytest.mark.parametrize("damage", [
    b"", b"\x07abc", b"\x00", b"\x01not deflate", zlib.compress(b"x" * 100)[:-3],
    b"\x01" + zlib.compress(b"x" * 100) + b"tail", b"\x01" + zlib.compress(bytes(metadata.MAX_BYTES + 1), 9),
    b"\x00" + bytes(metadata.MAX_BYTES + 1)])
def test_a_damaged_metadata_section_is_skipped_with_a_warning_and_no_pixel_changes(coded, damage):
    good = codec.decode(coded["kept"].read_bytes())
    with pytest.warns(UserWarning, match="EXIF section .*skipped"):
        bad = codec.decode(_with_section(coded["kept"], container.EXIF_SECTION, damage))
    assert np.array_equal(bad.pixels, good.pixels)
    assert bad.metadata.exif is None and bad.metadata.xmp == good.metadata.xmp


@pytest.mark.fast
def test_a_deflate_bomb_is_refused_after_inflating_at_most_the_bound():
    bomb = b"\x01" + zlib.compress(bytes(1 << 28), 9)  # 256 MiB of zeros in 260 kB
    with pytest.raises(FormatError, match="more than"):
        metadata.unpack(bomb, "XMP")


@pytest.mark.fast
def test_section_rules(coded):
    header, sections = container.unpack(coded["kept"].read_bytes())
    with pytest.raises(FormatError, match="two metadata sections"):
        container.pack(header, [*sections, (container.XMP_SECTION, b"\x00x")])
    header.version = container.FINE_VERSION
    with pytest.raises(FormatError, match="metadata sections are in version 4"):
        container.pack(header, sections)
    header.version = container.METADATA_VERSION
    with pytest.raises(FormatError, match="metadata sections are in version 4"):
        container.pack(header, [(k, s) for k, s in sections if k not in container.METADATA_KINDS])


@pytest.mark.fast
def test_metadata_over_the_bound_is_not_kept_aloud(photo2):
    img = Image.fromarray(photo2)
    img.info["xmp"] = b"<x>" + bytes(metadata.MAX_BYTES) + b"</x>"
    with pytest.warns(UserWarning, match="XMP not kept"):
        data = nic.compress(img)
    assert container.unpack(data)[0].version != container.METADATA_VERSION


@pytest.mark.fast
@pytest.mark.filterwarnings("ignore:Corrupt EXIF")  # Pillow's own, as nic reads the orientation
def test_unreadable_exif_is_dropped_aloud(photo2):
    img = Image.fromarray(photo2)
    img.info["exif"] = b"Exif\x00\x00MM\x00*garbage"
    with pytest.warns(UserWarning, match="EXIF data not kept"):
        data = nic.compress(img)
    assert container.unpack(data)[0].version != container.METADATA_VERSION


def test_cli_strip_gps_round_trip(tmp_path):
    src = _tagged(tmp_path / "photo.jpg")
    done = run_nic("compress", src, "--strip-gps", "-o", tmp_path / "p.nic")
    assert done.returncode == 0, done.stderr
    done = run_nic("decompress", tmp_path / "p.nic", "-o", tmp_path / "p.png")
    assert done.returncode == 0, done.stderr
    exif = Image.open(tmp_path / "p.png").getexif()
    assert exif[MODEL] == "EOS 5D" and GPS_IFD not in exif
    assert run_nic("compress", src, "--strip", "--strip-gps", "-o", tmp_path / "q.nic").returncode != 0


@pytest.mark.skipif(not shutil.which("exiftool"), reason="exiftool not installed")
def test_exiftool_reads_the_tags_back(coded, tmp_path):
    out = tmp_path / "p.png"
    decompress_file(coded["kept"], out)
    tags = subprocess.run(["exiftool", "-s", "-s", "-s", "-n", "-Make", "-Model", "-DateTimeOriginal",
                           "-GPSLatitude", "-GPSLongitude", "-Orientation", "-Creator", str(out)],
                          capture_output=True, text=True, check=True, timeout=60).stdout.split("\n")
    assert tags[:3] == ["Canon", "EOS 5D", "2020:01:02 03:04:05"]
    assert float(tags[3]) == pytest.approx(52 + 31 / 60 + 12 / 3600) and float(tags[4]) == pytest.approx(13.4, abs=0.01)
    assert tags[5:7] == ["1", "Ada Lovelace"]


@pytest.mark.fast
def test_a_folder_rerun_with_strip_does_not_skip_outputs_that_keep_metadata(coded):
    found = [(coded["src"], coded["kept"]), (coded["src"], coded["strip"])]
    folder = coded["src"].parent
    kept, stripped = decide("compress", found, folder / "in", folder, {"strip": True})
    assert kept.action == "refuse" and "keeps metadata" in kept.reason and stripped.action == "skip"
