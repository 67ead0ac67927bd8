"""Folders through the CLI: parallel workers, a broken file reported while the rest go on,
and a rerun that skips what is done."""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image

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
