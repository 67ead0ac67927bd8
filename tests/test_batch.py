"""Folders through the CLI: parallel workers, a broken file reported while the rest go on,
and a rerun that skips what is done."""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image

from nic.models import registry
from tests.conftest import DATA, run_nic


def test_folder_round_trip_with_a_broken_file(tmp_path: Path):
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    shutil.copy(DATA / "kodim05-crop.png", src / "a.png")
    shutil.copy(DATA / "kodim23-crop.png", src / "sub" / "b.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    r = run_nic("compress", src, "-o", tmp_path / "packed", "--jobs", "2")
    assert r.returncode == 1
    assert "2 compressed, 0 skipped (already done), 1 failed" in r.stdout
    assert "broken.jpg" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "packed" / "a.nic").is_file() and (tmp_path / "packed" / "sub" / "b.nic").is_file()
    assert not (tmp_path / "packed" / "broken.nic").exists()

    (src / "broken.jpg").unlink()
    r = run_nic("compress", src, "-o", tmp_path / "packed")
    assert r.returncode == 0 and "0 compressed, 2 skipped" in r.stdout

    r = run_nic("decompress", tmp_path / "packed", "-o", tmp_path / "unpacked")
    assert r.returncode == 0, r.stderr
    assert "2 decompressed" in r.stdout
    assert Image.open(tmp_path / "unpacked" / "sub" / "b.png").size == (100, 80)


def test_folder_needs_an_output(tmp_path: Path):
    r = run_nic("compress", DATA)
    assert r.returncode == 1 and "needs -o OUTDIR" in r.stderr


def test_reruns_never_keep_or_replace_the_wrong_files(tmp_path: Path):
    src = tmp_path / "photos"
    src.mkdir()
    shutil.copy(DATA / "kodim05-crop.png", src / "a.png")
    shutil.copy(DATA / "kodim23-crop.png", src / "dup.png")
    Image.open(DATA / "kodim23-crop.png").convert("RGB").save(src / "dup.jpg")
    out = tmp_path / "packed"
    out.mkdir()
    stale = out / f".a.nic.{2**22 + 12345}-00000000.tmp"  # left by a killed writer (no such process)
    stale.write_bytes(b"partial")
    r = run_nic("compress", src, "-o", out, "-q", "40", "--jobs", "2")
    assert r.returncode == 1 and "1 compressed, 0 skipped (already done), 2 failed" in r.stdout
    assert "dup.jpg and " in r.stderr and "would both be written to" in r.stderr and "dup.png and" in r.stderr
    assert not (out / "dup.nic").exists() and not stale.exists()
    (src / "dup.jpg").unlink()

    r = run_nic("compress", src, "-o", out, "-q", "80")  # other settings: said, not skipped
    assert r.returncode == 1 and "1 compressed, 0 skipped (already done), 1 failed" in r.stdout
    assert "a.nic: exists and was made at quality 40, not 80 (use --force to replace it)" in r.stderr
    r = run_nic("compress", src, "-o", out, "-q", "40", "--model", "conv-ae")
    assert r.returncode == 1 and f"was made with model {registry.DEFAULT_MODEL}, not conv-ae" in r.stderr
    r = run_nic("compress", src, "-o", out, "-q", "40")  # dup.nic is now the q80 run's
    assert r.returncode == 1 and "0 compressed, 1 skipped (already done), 1 failed" in r.stdout
    assert "dup.nic: exists and was made at quality 80, not 40" in r.stderr

    # decompressing next to the originals: the photos are never replaced, not even with --force
    shutil.copy(out / "a.nic", src / "a.nic")
    before = (src / "a.png").read_bytes()
    for force in ([], ["--force"]):
        r = run_nic("decompress", src, "-o", src, *force)
        assert r.returncode == 1 and "a.png: exists" in r.stderr, r.stderr
    assert (src / "a.png").read_bytes() == before

    r = run_nic("compress", src, "-o", out, "--jobs", "-1")
    assert r.returncode == 1 and r.stderr == "nic: error: --jobs must be 0 (one per core) or more, got -1\n"


def test_an_output_never_replaces_its_input(tmp_path: Path):
    shutil.copy(DATA / "kodim05-crop.png", tmp_path / "p.png")
    before = (tmp_path / "p.png").read_bytes()
    r = run_nic("compress", "p.png", "-o", "p.png", "--force", cwd=tmp_path)
    assert r.returncode == 1 and "p.png: is the input file" in r.stderr
    assert (tmp_path / "p.png").read_bytes() == before
