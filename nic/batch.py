"""Folders in, folders out: `nic compress DIR -o OUT` and `nic decompress DIR -o OUT`.

Files are coded by worker processes (one torch thread each, `batch_workers.py`); a file that
fails is reported and the batch goes on. Ctrl-C or SIGTERM stops the batch at once (exit
status 130), keeping the finished files and removing the killed workers' temp files.
Outputs that already exist with the same settings are skipped, so an interrupted batch is
finished by running it again (every output is written atomically, never over a file without
--force); what else happens to existing outputs is decided up front (`batch_plan.py`).
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from nic import batch_workers, writes
from nic.batch_plan import decide
from nic.errors import NicError
from nic.io import IMAGE_SUFFIXES


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _job(kind: str, src: Path, dst: Path, options: dict) -> str | None:
    """Runs in a worker: None on success, else the one-line reason."""
    from nic.files import compress_file, decompress_file

    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        (compress_file if kind == "compress" else decompress_file)(src, dst, **options)
        return None
    except NicError as e:
        return str(e)
    except Exception as e:  # a broken file must not stop the batch
        return f"{src}: {type(e).__name__}: {e}"


def pairs(kind: str, src_dir: Path, out_dir: Path) -> list[tuple[Path, Path]]:
    """(input, output) pairs, mirroring the input folder's layout."""
    if not src_dir.is_dir():
        raise NicError(f"{src_dir}: not a folder")
    if kind == "compress":
        files = [p for p in src_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        suffix = ".nic"
    else:
        files = [p for p in src_dir.rglob("*.nic") if p.is_file()]
        suffix = ".png"
    return [(p, (out_dir / p.relative_to(src_dir)).with_suffix(suffix)) for p in sorted(files)]


def code_folder(kind: str, src_dir: Path, out_dir: Path, options: dict, jobs: int = 0,
                progress: bool = True) -> Summary:
    """Compress or decompress every file of `src_dir` into `out_dir`; returns what happened to each."""
    if jobs < 0:
        raise NicError(f"--jobs must be 0 (one per core) or more, got {jobs}")
    found = pairs(kind, src_dir, out_dir)
    if not found:
        raise NicError(f"{src_dir}: no {'images' if kind == 'compress' else '.nic files'} found")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NicError(f"{out_dir}: cannot create ({e.strerror})") from None
    writes.check_folder(out_dir)  # a read-only or full disk is said now, not after the work
    for folder in {dst.parent for _, dst in found if dst.parent.is_dir()}:
        writes.remove_stale_temps(folder)
    summary = Summary()
    todo = []
    for d in decide(kind, found, src_dir, out_dir, options):
        if d.action == "skip":
            summary.skipped += 1
        elif d.action == "refuse":
            summary.failed.append((str(d.src), d.reason))
        else:
            todo.append((d.src, d.dst))
    jobs = jobs or min(len(todo), os.cpu_count() or 1) or 1
    with batch_workers.stop_signals() as stop, \
            tqdm(total=len(todo), disable=not progress, unit="file", dynamic_ncols=True) as bar:
        for _, reason in summary.failed:
            bar.write(f"nic: failed: {reason}")

        def finished(task: tuple, error: object) -> None:
            if error is None:
                summary.done += 1
            else:
                error = f"{task[1]}: {error}" if isinstance(error, batch_workers.Died) else str(error)
                summary.failed.append((str(task[1]), error))
                bar.write(f"nic: failed: {error}")
            bar.update(1)

        try:
            batch_workers.Pool(jobs, _worker_init, _job).run(
                [(kind, src, dst, options) for src, dst in todo], finished, stop)
        finally:  # the temp files of workers killed mid-write
            for folder in {dst.parent for _, dst in todo if dst.parent.is_dir()}:
                writes.remove_stale_temps(folder)
    if stop.caught:
        gc.freeze()  # the process is ending: its exit need not walk torch's objects (0.5 s of CPU)
        raise KeyboardInterrupt
    return summary
