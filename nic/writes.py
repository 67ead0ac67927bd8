"""Writing files so that a user never finds a half-written or silently replaced one.

Every output nic makes goes through `atomic_write`: all bytes are computed first, then a
hidden temp file is written, synced and renamed into place. Nothing is replaced without
`force`, and folders that cannot take a file are refused before any work is done. The temp
file and the no-replace rename are nic_decode.output's, which writes the same way.
"""

from __future__ import annotations

import glob
import os
import stat
import time
from pathlib import Path

from nic.errors import NicError
from nic_decode.output import publish, temp_written  # the decoder's writes too

MIN_FREE_BYTES = 1 << 16  # a folder with less free space than this is full


def _write_problem(folder: Path) -> str | None:
    """Why nothing can be written in `folder` (read-only, full, not permitted), or None."""
    try:
        st = os.statvfs(folder)
        if st.f_flag & os.ST_RDONLY:
            return "read-only file system"
        if st.f_bavail * st.f_frsize < MIN_FREE_BYTES:
            return "no space left on device"
    except (AttributeError, OSError):  # no statvfs here: the write itself will tell
        pass
    return None if os.access(folder, os.W_OK) else "permission denied"


def check_folder(folder: Path) -> None:
    """Refuse a folder on a read-only or full disk, or one nic may not write to."""
    problem = _write_problem(folder)
    if problem:
        raise NicError(f"{folder}: cannot write here ({problem})")


def not_replaceable(path: Path) -> str | None:
    """Why an existing `path` may not be replaced even with --force, or None. A rename over a
    device, a FIFO or a socket would remove it (as root, /dev/null), and one over a symlink
    would cut the link, so only regular files are ever replaced."""
    try:
        mode = path.lstat().st_mode
    except OSError:  # not there (any more): nothing to replace
        return None
    if stat.S_ISLNK(mode):
        return f"{path}: already exists and is a symbolic link; nic replaces only regular files, even with --force"
    if stat.S_ISDIR(mode):
        return f"{path}: is a directory"
    if not stat.S_ISREG(mode):
        return (f"{path}: already exists and is not a regular file (a device, FIFO or socket); "
                "nic replaces only regular files, even with --force")
    return None


def check_writable(path: str | os.PathLike, force: bool) -> Path:
    """Refuse, before any work is done: an output that exists without --force, anything but
    a regular file even with it (a symlink, a device, a FIFO, a folder), a missing folder, a
    folder on a read-only or full disk."""
    path = Path(path)
    problem = not_replaceable(path)
    if problem:
        raise NicError(problem)
    if os.path.lexists(path) and not force:
        raise NicError(f"{path}: already exists (use --force to overwrite)")
    if not path.parent.is_dir():
        raise NicError(f"{path.parent}: no such directory")
    check_folder(path.parent)
    return path


TEMP_AGE_S = 600  # a temp file of unknown owner older than this is left over from a crash


def _stale(tmp: Path) -> bool:
    """A temp file whose writer is gone: its process id (in the name) is not running, or,
    for names without one, it is older than TEMP_AGE_S."""
    owner = tmp.name[:-len(".tmp")].rsplit(".", 1)[-1].split("-")[0]
    if owner.isdigit():
        try:
            os.kill(int(owner), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, OverflowError):
            return False
        return False
    try:
        return time.time() - tmp.lstat().st_mtime > TEMP_AGE_S
    except OSError:
        return False


def remove_stale_temps(folder: Path, name: str = "*") -> int:
    """Delete `.NAME.*.tmp` files that a killed writer left in `folder`; returns how many."""
    removed = 0
    for tmp in folder.glob(f".{glob.escape(name) if name != '*' else '*'}.*.tmp"):
        if _stale(tmp):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def atomic_write(path: str | os.PathLike, data: bytes, force: bool = False) -> None:
    """Write a whole file or nothing: callers compute every byte first, then this writes a
    hidden temp file in the same folder, fsyncs it and renames it into place, so a kill at
    any moment leaves either no output or the complete one (at worst a stray
    .NAME.PID-X.tmp, removed by the next write to that folder once PID is gone). Without
    `force` an existing file is never replaced, even one that appears meanwhile."""
    path = check_writable(path, force)
    remove_stale_temps(path.parent, path.name)
    try:
        with temp_written(path, data) as tmp:
            if force:
                problem = not_replaceable(path)  # again: it may have changed during the work
                if problem:
                    raise NicError(problem)
                os.replace(tmp, path)
            else:
                publish(tmp, path)
    except FileExistsError:
        raise NicError(f"{path}: already exists (use --force to overwrite)") from None
    except OSError as e:
        raise NicError(f"{path}: cannot write ({e.strerror or e})") from None
