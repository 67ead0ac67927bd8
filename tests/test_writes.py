"""Writing outputs: nothing replaced without --force (not even a dangling symlink, not even
a file that appears during the encode), no temp files left behind, and a disk that cannot
take the file is reported in one line, before the work where that can be known."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from nic import batch_plan, cli, codec, writes
from nic.errors import NicError
from tests.conftest import DATA, run_nic


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    Image.open(DATA / "kodim05-crop.png").save(tmp_path / "photo.png")
    return tmp_path


def test_a_dangling_symlink_is_not_replaced_without_force(workdir):
    (workdir / "out.nic").symlink_to(workdir / "nowhere")
    r = run_nic("compress", "photo.png", "-o", "out.nic", cwd=workdir)
    assert r.returncode == 1 and "out.nic: already exists" in r.stderr
    assert (workdir / "out.nic").is_symlink() and not (workdir / "nowhere").exists()


@pytest.mark.fast
def test_a_file_that_appears_during_the_write_is_not_replaced(tmp_path, monkeypatch):
    target = tmp_path / "out.nic"

    def someone_else_writes(folder, name):  # runs after the existence check, before the rename
        target.write_bytes(b"theirs")
        return 0

    monkeypatch.setattr(writes, "remove_stale_temps", someone_else_writes)
    with pytest.raises(NicError, match="already exists"):
        writes.atomic_write(target, b"mine")
    assert target.read_bytes() == b"theirs" and [p.name for p in tmp_path.iterdir()] == ["out.nic"]
    writes.atomic_write(target, b"mine", force=True)
    assert target.read_bytes() == b"mine"


def test_temp_files_of_killed_writers_are_cleaned_up(workdir):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = workdir / f".photo.nic.{gone.stdout.strip()}-0badc0de.tmp"
    old_style = workdir / ".photo.nic.k3j4h5g6.tmp"  # as earlier releases named them
    alive = workdir / f".photo.nic.{os.getpid()}-12345678.tmp"
    for p in (dead, old_style, alive):
        p.write_bytes(b"partial")
    hour_ago = time.time() - 3600
    os.utime(old_style, (hour_ago, hour_ago))
    assert run_nic("compress", "photo.png", cwd=workdir).returncode == 0
    assert not dead.exists() and not old_style.exists() and alive.exists()


def test_a_failing_write_is_one_clear_line_and_leaves_nothing(workdir):
    # a file-size limit makes the write itself fail (EFBIG), as a full disk would (ENOSPC)
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000)); "
            "from nic.cli import main; sys.exit(main(['compress', 'photo.png', '-o', 'out.nic']))")
    r = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines() == ["nic: error: out.nic: cannot write (File too large)"]
    assert sorted(p.name for p in workdir.iterdir()) == ["photo.png"]


@pytest.mark.fast
@pytest.mark.parametrize("flag, avail, message", [(os.ST_RDONLY, 10**9, "read-only file system"),
                                                   (0, 0, "no space left on device")])
def test_read_only_or_full_disk_is_reported_before_the_work(workdir, monkeypatch, capsys, flag, avail, message):
    real = os.statvfs

    class Stat:
        def __init__(self, path):
            st = real(path)
            self.f_flag, self.f_bavail, self.f_frsize = st.f_flag | flag, avail, st.f_frsize

    monkeypatch.setattr(os, "statvfs", Stat)
    monkeypatch.setattr(codec, "encode", lambda *a, **k: pytest.fail("encoded before checking the output"))
    monkeypatch.chdir(workdir)
    assert cli.main(["compress", "photo.png", "-o", "out.nic"]) == 1
    assert capsys.readouterr().err == f"nic: error: .: cannot write here ({message})\n"


def _special(kind: str, path: Path, elsewhere: Path) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        elsewhere.write_bytes(b"theirs")
        path.symlink_to(elsewhere)
    else:  # a character device: the same one as /dev/null, which only root may make
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("making a device needs root")


@pytest.mark.fast
@pytest.mark.parametrize("kind", ["fifo", "symlink", "device"])
def test_only_regular_files_are_replaced_even_with_force(workdir, monkeypatch, capsys, kind):
    out = workdir / "out.nic"
    _special(kind, out, workdir / "theirs.nic")
    before = out.lstat()
    monkeypatch.chdir(workdir)
    assert cli.main(["compress", "photo.png", "-o", "out.nic", "--force"]) == 1
    err = capsys.readouterr().err
    what = "is a symbolic link" if kind == "symlink" else "is not a regular file (a device, FIFO or socket)"
    assert err == (f"nic: error: out.nic: already exists and {what}; "
                   "nic replaces only regular files, even with --force\n")
    after = out.lstat()
    assert (after.st_mode, after.st_ino, after.st_rdev) == (before.st_mode, before.st_ino, before.st_rdev)
    assert not list(workdir.glob(".*.tmp"))
    if kind == "symlink":
        assert (workdir / "theirs.nic").read_bytes() == b"theirs"
    with pytest.raises(NicError, match="nic replaces only regular files"):  # nor by a write that was checked before
        writes.atomic_write(out, b"mine", force=True)


@pytest.mark.fast
def test_a_batch_with_force_refuses_a_fifo_output_up_front(workdir):
    src, out = workdir / "photos", workdir / "packed"
    src.mkdir()
    out.mkdir()
    os.mkfifo(out / "photo.nic")  # never read (it would block) nor replaced
    [decision] = batch_plan.decide("compress", [(src / "photo.png", out / "photo.nic")], src, out, {"force": True})
    assert decision.action == "refuse" and "is not a regular file" in decision.reason
    assert stat.S_ISFIFO((out / "photo.nic").lstat().st_mode)
