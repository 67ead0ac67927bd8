"""Writing a file whole or not at all, never over an existing one; nic's writes (nic/writes.py)
are built from the same pieces.

The bytes go to a hidden temp file in the same folder, are synced, then get their name by a
hard link, which fails atomically if the name exists (no check-then-write race).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nic_decode.errors import NicError


@contextmanager
def temp_written(path: Path, data: bytes) -> Iterator[Path]:
    """A hidden temp file beside `path` holding `data`, synced to disk, removed on the way out
    (after `publish`, only its temp name goes). It is named `.NAME.PID-X.tmp`, so that nic's
    sweep of stale temps can tell when its writer is gone."""
    tmp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def publish(tmp: Path, path: Path) -> None:
    """Give the finished temp file its name without replacing anything: a hard link fails
    if the name exists, atomically (no check-then-rename race). Where links are not
    supported, the name is reserved with O_EXCL and the file renamed onto it."""
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise
    except OSError:
        pass
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    os.replace(tmp, path)


def check_writable(path: Path) -> None:
    """Refuse, before any decoding: an existing output, a missing folder."""
    if os.path.lexists(path):
        raise NicError(f"{path}: already exists (nic_decode never overwrites)")
    if not path.parent.is_dir():
        raise NicError(f"{path.parent}: no such directory")


def write_new(path: Path, data: bytes) -> None:
    """Write `data` as the new file `path`, atomically; NicError if it exists or cannot be written."""
    check_writable(path)
    try:
        with temp_written(path, data) as tmp:
            publish(tmp, path)
    except FileExistsError:
        raise NicError(f"{path}: already exists (nic_decode never overwrites)") from None
    except OSError as e:
        raise NicError(f"{path}: cannot write ({e.strerror})") from None
