"""The `nic` command end to end, in a subprocess: real files in, real files out, and every
bad input answered with one line on stderr, a non-zero exit and no output file."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nic
from nic.cli import EXTRAS
from nic.eval.metrics import psnr
from nic.models import registry
from tests.conftest import DATA, run_nic


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    Image.open(DATA / "kodim05-crop.png").save(tmp_path / "photo.png")
    return tmp_path


def assert_clean_failure(result, workdir: Path, before: set[str], needle: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("nic: error:") and needle in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert {p.name for p in workdir.iterdir()} == before  # nothing left behind, no temp files


def test_compress_decompress_info_models(workdir):
    r = run_nic("compress", "photo.png", "-q", "60", cwd=workdir)
    assert r.returncode == 0, r.stderr
    nic_file = workdir / "photo.nic"
    assert nic_file.stat().st_size > 100
    r = run_nic("decompress", "photo.nic", "-o", "back.png", cwd=workdir)
    assert r.returncode == 0, r.stderr
    src = np.asarray(Image.open(workdir / "photo.png").convert("RGB"))
    out = np.asarray(Image.open(workdir / "back.png"))
    assert out.shape == src.shape and psnr(src, out) > 25
    r = run_nic("info", "photo.nic", cwd=workdir)
    assert r.returncode == 0 and "quality:     60 (latent at 50, plus a fine layer)" in r.stdout
    assert "128x96" in r.stdout and "version 3" in r.stdout and "fine " in r.stdout
    r = run_nic("models")
    assert r.returncode == 0 and f"{registry.DEFAULT_MODEL} (default)" in r.stdout


def test_target_size(workdir):
    r = run_nic("compress", "photo.png", "--bpp", "0.8", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert (workdir / "photo.nic").stat().st_size * 8 / (128 * 96) <= 0.8


def test_exif_orientation_is_applied(workdir):
    img = Image.open(workdir / "photo.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    img.save(workdir / "rotated.jpg", quality=95, exif=exif)
    assert run_nic("compress", "rotated.jpg", cwd=workdir).returncode == 0
    assert run_nic("decompress", "rotated.nic", cwd=workdir).returncode == 0
    assert Image.open(workdir / "rotated.png").size == (96, 128)


def test_sixteen_bit_input_warns_and_works(workdir):
    grey16 = (np.asarray(Image.open(workdir / "photo.png").convert("L")).astype(np.uint16) * 257)
    Image.fromarray(grey16).save(workdir / "deep.png")
    r = run_nic("compress", "deep.png", cwd=workdir)
    assert r.returncode == 0 and "reduced to 8 bits" in r.stderr
    assert run_nic("decompress", "deep.nic", "-o", "deep-back.png", cwd=workdir).returncode == 0
    assert Image.open(workdir / "deep-back.png").mode == "L"


def make_nic(workdir: Path) -> bytes:
    assert run_nic("compress", "photo.png", "-o", "good.nic", cwd=workdir).returncode == 0
    return (workdir / "good.nic").read_bytes()


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def test_bad_inputs(workdir):
    good = make_nic(workdir)
    (workdir / "empty.png").write_bytes(b"")
    (workdir / "text.png").write_text("this is not an image\n")
    (workdir / "trunc.png").write_bytes((workdir / "photo.png").read_bytes()[:300])
    (workdir / "empty.nic").write_bytes(b"")
    (workdir / "trunc.nic").write_bytes(good[: len(good) // 2])
    (workdir / "flip.nic").write_bytes(good[:60] + bytes([good[60] ^ 4]) + good[61:])
    (workdir / "magic.nic").write_bytes(b"JUNK" + good[4:])
    (workdir / "version.nic").write_bytes(good[:4] + b"\x09" + good[5:])
    name = b"hyperprior"
    (workdir / "model.nic").write_bytes(with_crc(good[:31] + b"nosuchmode" + good[31 + len(name):-4]))
    (workdir / "huge.nic").write_bytes(with_crc(good[:10] + struct.pack("<II", 2**31, 2**31) + good[18:-4]))
    (workdir / "exists.png").write_bytes(b"keep me")
    before = {p.name for p in workdir.iterdir()}
    cases = [
        (("compress", "missing.png"), "no such file"),
        (("compress", "empty.png", "-o", "x.nic"), "not an image"),
        (("compress", "text.png", "-o", "x.nic"), "not an image"),
        (("compress", "trunc.png", "-o", "x.nic"), "cannot read image"),
        (("compress", "photo.png", "-o", "good.nic"), "already exists"),
        (("compress", "photo.png", "-o", "x.nic", "--model", "nope"), "unknown model"),
        (("compress", "photo.png", "-o", "x.nic", "-q", "0"), "quality"),
        (("compress", "photo.png", "-o", "x.nic", "--bpp", "-1"), "positive"),
        (("decompress", "empty.nic", "-o", "x.png"), "bad magic"),
        (("decompress", "trunc.nic", "-o", "x.png"), "checksum"),
        (("decompress", "flip.nic", "-o", "x.png"), "checksum"),
        (("decompress", "magic.nic", "-o", "x.png"), "bad magic"),
        (("decompress", "version.nic", "-o", "x.png"), "version 9"),
        (("decompress", "model.nic", "-o", "x.png"), "unknown model"),
        (("decompress", "huge.nic", "-o", "x.png"), "2147483648x2147483648"),
        (("decompress", "good.nic", "-o", "exists.png"), "already exists"),
        (("info", "flip.nic"), "checksum"),
    ]
    for args, needle in cases:
        assert_clean_failure(run_nic(*args, cwd=workdir), workdir, before, needle)
    assert (workdir / "exists.png").read_bytes() == b"keep me"


def test_force_overwrites(workdir):
    make_nic(workdir)
    (workdir / "out.png").write_bytes(b"old")
    r = run_nic("decompress", "good.nic", "-o", "out.png", "--force", cwd=workdir)
    assert r.returncode == 0 and Image.open(workdir / "out.png").size == (128, 96)


def test_max_pixels_limit(workdir):
    env = dict(os.environ, NIC_MAX_PIXELS="1000")
    before = {p.name for p in workdir.iterdir()}
    r = run_nic("compress", "photo.png", cwd=workdir, env=env)
    assert_clean_failure(r, workdir, before, "limit of 1000 pixels")


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_kill_9_leaves_no_partial_output(tmp_path, full_photo, command):
    big = Image.fromarray(full_photo).resize((1536, 1024))
    big.save(tmp_path / "big.png")
    if command == "decompress":
        assert run_nic("compress", "big.png", "-o", "big.nic", cwd=tmp_path).returncode == 0
    src, out = ("big.png", "out.nic") if command == "compress" else ("big.nic", "out.png")
    before = {p.name for p in tmp_path.iterdir()}
    for delay in (0.5, 1.0, 1.5, 2.0):
        proc = subprocess.Popen([sys.executable, "-m", "nic", command, src, "-o", out], cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.kill()
        proc.wait()
        left = {p.name for p in tmp_path.iterdir()} - before
        assert left in (set(), {out}), left  # nothing, or the whole file
        if left:  # it finished before the kill: the file must be whole
            if command == "compress":
                nic.container.unpack((tmp_path / out).read_bytes())
            else:
                assert Image.open(tmp_path / out).size == (1536, 1024)
            (tmp_path / out).unlink()



# `nic` as `pip install nic` leaves it: no module that an extra brings can be imported.
WITHOUT_EXTRAS = f"import sys; sys.modules.update(dict.fromkeys({sorted(m for ms in EXTRAS.values() for m in ms)!r}))"


def test_core_commands_and_the_pillow_plugin_need_no_extra(workdir):
    steps = ["compress photo.png -q 60", "decompress photo.nic -o back.png", "info photo.nic", "models",
             f"train run --data {DATA} --model hyperprior --steps 2 --batch 2 --quiet --set data.crop=64 "
             "--set model.N=16 --set model.M=24 --set run.precision='fp32' --set run.channels_last=false"]
    script = WITHOUT_EXTRAS + """
from PIL import Image
import nic
from nic.cli import main
for step in sys.argv[1:]:
    if main(step.split()):
        sys.exit("failed: nic " + step)
Image.open("photo.nic").save("pillow.png")
"""
    r = subprocess.run([sys.executable, "-c", script, *steps], cwd=workdir, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"model:       {registry.DEFAULT_MODEL}" in r.stdout and f"{registry.DEFAULT_MODEL} (default)" in r.stdout
    assert np.array_equal(np.asarray(Image.open(workdir / "pillow.png")), np.asarray(Image.open(workdir / "back.png")))
    assert (workdir / "run" / "checkpoint.pt").is_file()


@pytest.mark.parametrize("command", [("serve", "--port", "0"), ("eval", ".", "--out", "results")])
def test_a_command_whose_extra_is_missing_names_it_in_one_line(workdir, command):
    before = {p.name for p in workdir.iterdir()}
    script = WITHOUT_EXTRAS + "; from nic.cli import main; sys.exit(main(sys.argv[1:]))"
    r = subprocess.run([sys.executable, "-c", script, *command], cwd=workdir, capture_output=True, text=True,
                       timeout=60)
    assert_clean_failure(r, workdir, before, f"nic {command[0]} needs the {command[0]} extra")
    assert r.stderr.rstrip().endswith(f"pip install 'nic[{command[0]}]'")


@pytest.mark.fast
def test_decompress_to_webp_keeps_every_pixel_and_gif_says_it_quantizes(tmp_path, photo, capsys):
    from nic.cli import main

    rgba = np.dstack([photo, np.where(np.arange(photo.shape[1]) < 20, 0, 255).astype(np.uint8)[None].repeat(96, 0)])
    (tmp_path / "p.nic").write_bytes(nic.compress(rgba, quality=30))
    for out in ("p.png", "p.webp", "p.gif"):
        assert main(["decompress", str(tmp_path / "p.nic"), "-o", str(tmp_path / out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["nic: warning: GIF holds at most 256 colours: this image has more and is quantized to 256 "
                   "(write .png or .webp to keep every pixel)"], err
    png, webp = Image.open(tmp_path / "p.png"), Image.open(tmp_path / "p.webp")
    assert webp.mode == "RGBA" and np.array_equal(np.asarray(png), np.asarray(webp))  # colour under alpha 0 too
