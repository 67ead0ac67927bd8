"""Folders through the CLI: parallel workers, a broken file reported while the rest go on,
a rerun that skips what is done, and a batch that stops at once when signalled and leaves
no worker behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from nic.files import decompress_file
from nic.models import registry
from tests.conftest import ASSETS, DATA, run_nic


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


STOP_S = 2.0  # one Ctrl-C stops a batch within this
PROC = Path("/proc")


def _state(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process from /proc, or None once it is gone."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], int(fields[1])


def _children(pid: int) -> set[int]:
    kids = set()
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (st := _state(int(entry.name))) and st[1] == pid and st[0] != "Z":
            kids.add(int(entry.name))
    return kids


def _poll(condition, timeout: float, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(step)
    return condition()


def _running_batch(tmp_path: Path, jobs: int, photos: int = 8) -> tuple[subprocess.Popen, Path, set[int]]:
    """A batch of photos, once its first output is written and its workers are busy on more."""
    src, out = tmp_path / "photos", tmp_path / "packed"
    src.mkdir()
    for i in range(photos):
        shutil.copy(ASSETS / "kodim23.png", src / f"p{i}.png")
    batch = subprocess.Popen([sys.executable, "-m", "nic", "compress", src, "-o", out, "--jobs", str(jobs)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _poll(lambda: batch.poll() is None and any(out.glob("*.nic")), 120), batch.communicate()
        workers = _children(batch.pid)
        assert len(workers) == jobs
    except BaseException:
        batch.kill()
        raise
    return batch, out, workers


def _gone(pid: int) -> bool:
    st = _state(pid)
    return st is None or st[0] == "Z"


@pytest.mark.skipif(not PROC.is_dir(), reason="reads processes from /proc")
@pytest.mark.parametrize("signals", [[signal.SIGINT], [signal.SIGINT, signal.SIGINT], [signal.SIGTERM]],
                         ids=["ctrl-c", "ctrl-c-twice", "sigterm"])
def test_a_signal_stops_a_batch_at_once_and_keeps_what_is_done(tmp_path: Path, signals):
    batch, out, workers = _running_batch(tmp_path, jobs=1)
    start = time.monotonic()
    for sig in signals:
        batch.send_signal(sig)
        time.sleep(0.05)
    try:
        _, err = batch.communicate(timeout=60)
    finally:
        batch.kill()
    took = time.monotonic() - start
    assert batch.returncode == 130 and err.endswith("nic: interrupted\n") and "Traceback" not in err, err
    assert took < STOP_S, f"took {took:.1f} s to stop"
    assert all(_gone(w) for w in workers)
    assert not list(out.glob(".*.tmp"))
    done = sorted(out.glob("*.nic"))
    assert 1 <= len(done) < 8
    for nic in done:
        assert decompress_file(nic, tmp_path / f"{nic.stem}.png").width == 768


@pytest.mark.skipif(not PROC.is_dir(), reason="reads processes from /proc")
def test_no_worker_outlives_a_killed_batch(tmp_path: Path):
    batch, _, workers = _running_batch(tmp_path, jobs=2)
    batch.kill()
    # nothing else holds its stdout and stderr, so a caller reading them is not kept waiting
    batch.communicate(timeout=10)
    assert _poll(lambda: all(_gone(w) for w in workers), 10), [_state(w) for w in workers]


@pytest.mark.skipif(not PROC.is_dir(), reason="reads processes from /proc")
def test_a_worker_that_dies_fails_its_file_and_the_batch_goes_on(tmp_path: Path):
    batch, out, [worker] = _running_batch(tmp_path, jobs=1, photos=4)
    os.kill(worker, signal.SIGKILL)  # as the out-of-memory killer would
    try:
        outs, err = batch.communicate(timeout=120)
    finally:
        batch.kill()
    done = len(list(out.glob("*.nic")))
    assert "Traceback" not in err and not list(out.glob(".*.tmp"))
    if batch.returncode == 1:  # it was killed mid-file (else just after one, which is kept)
        assert f"{done} compressed, 0 skipped (already done), 1 failed" in outs and done == 3
        assert "its worker process ended (signal 9)" in err
    else:
        assert batch.returncode == 0 and done == 4
