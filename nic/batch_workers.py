"""The worker processes of a folder batch: stopped at once by Ctrl-C, never outliving the batch.

ProcessPoolExecutor is not used because, on Ctrl-C, it codes every queued file before it
returns, a second Ctrl-C during that wait can hang it for good, and after kill -9 of the
parent its workers live on, holding stdout and stderr open. Here:
- workers ignore SIGINT (a terminal sends it to the whole process group): the parent decides;
- in the parent, SIGINT and SIGTERM only set a flag (`stop_signals`), so cleaning up is never
  cut short, however many come; the parent then kills the workers (a file being coded is
  coded again by the next run) and its caller removes their temp files;
- a worker dies with its parent however the parent ends, even by kill -9: on Linux the kernel
  kills it (PR_SET_PDEATHSIG), and everywhere a thread sees the parent's lifeline pipe close.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

POLL_S = 0.2  # how often the parent looks at the stop flag while workers are busy
JOIN_S = 5.0  # how long a worker may take to exit once asked to, before it is killed
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Stop:
    """Set by SIGINT or SIGTERM while a batch runs."""

    caught: bool = False


@contextmanager
def stop_signals() -> Iterator[Stop]:
    """While inside: SIGINT and SIGTERM set `caught` instead of raising, so the batch stops at
    a point of its choosing. Only the main thread can take signals; elsewhere nothing changes."""
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def caught(signum, frame) -> None:
        stop.caught = True

    old = {s: signal.signal(s, caught) for s in _SIGNALS}
    try:
        yield stop
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


@dataclass(frozen=True)
class Died:
    """The result of a task whose worker ended before answering (killed, out of memory, crashed)."""

    exitcode: int | None

    def __str__(self) -> str:
        code = self.exitcode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return f"its worker process ended ({how})"


def _die_with_parent(parent: int, lifeline: Connection) -> None:
    """Make sure this worker ends when `parent` does, by any means."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it ended before the line above
        os._exit(1)

    def watch() -> None:
        try:
            lifeline.poll(None)  # nothing is ever sent: this returns when the parent's end closes
        except OSError:
            pass
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _worker(conn: Connection, lifeline: Connection, lifeline_end: Connection, parent: int,
            init: Callable[[], None], job: Callable[..., object]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
    lifeline_end.close()  # only the parent may hold it, or its closing would go unseen
    _die_with_parent(parent, lifeline)
    init()
    try:
        while (task := conn.recv()) is not None:
            conn.send(job(*task))
    except (EOFError, OSError):  # the parent is gone
        pass


def _answer(conn: Connection) -> tuple[bool, object]:
    """(True, what the worker sent) if it sent something, else (False, None)."""
    try:
        if conn.poll():
            return True, conn.recv()
    except (EOFError, OSError):
        pass
    return False, None


class Pool:
    """`size` processes calling `job(*task)` on tasks, after `init()` once each."""

    def __init__(self, size: int, init: Callable[[], None], job: Callable[..., object]) -> None:
        self.size, self._init, self._job = size, init, job
        # fork starts at once (torch is already imported); elsewhere fork is not safe
        self._ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        self._lifeline, self._lifeline_end = self._ctx.Pipe(duplex=False)
        self._busy: dict[Connection, tuple[multiprocessing.process.BaseProcess, tuple]] = {}
        self._idle: list[tuple[Connection, multiprocessing.process.BaseProcess]] = []

    def run(self, tasks: list[tuple], on_result: Callable[[tuple, object], None], stop: Stop) -> None:
        """Run every task, calling `on_result(task, result)` here as each ends (result is a
        `Died` if its worker ended first). Returns once all are done, or as soon as `stop` is
        caught, with every worker ended either way."""
        todo = list(reversed(tasks))
        try:
            for _ in range(min(self.size, len(todo))):
                self._give(self._start(), todo.pop())
            while self._busy and not stop.caught:
                self._collect(todo, on_result, stop)
        except BaseException:
            self._close(kill=True)
            raise
        self._close(kill=stop.caught)

    def _start(self) -> tuple[Connection, multiprocessing.process.BaseProcess]:
        ours, theirs = self._ctx.Pipe()
        proc = self._ctx.Process(target=_worker, daemon=True, args=(
            theirs, self._lifeline, self._lifeline_end, os.getpid(), self._init, self._job))
        blocking = hasattr(signal, "pthread_sigmask")
        if blocking:  # until the worker ignores SIGINT, which it then unblocks
            old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            proc.start()
        finally:
            if blocking:
                signal.pthread_sigmask(signal.SIG_SETMASK, old)
        theirs.close()
        return ours, proc

    def _give(self, worker: tuple[Connection, multiprocessing.process.BaseProcess], task: tuple) -> None:
        conn, proc = worker
        try:
            conn.send(task)
        except OSError:  # it has died: its sentinel says so next
            pass
        self._busy[conn] = (proc, task)

    def _collect(self, todo: list[tuple], on_result: Callable[[tuple, object], None], stop: Stop) -> None:
        """Wait up to POLL_S for workers to answer or die, and hand out the next tasks."""
        sentinels = {proc.sentinel: conn for conn, (proc, _) in self._busy.items()}
        ready = wait([*self._busy, *sentinels], timeout=POLL_S)
        for conn in {sentinels.get(r, r) for r in ready}:
            proc, task = self._busy.pop(conn)
            answered, result = _answer(conn)
            if not answered and proc.is_alive():  # ready, yet neither an answer nor dead: not yet
                self._busy[conn] = (proc, task)
                continue
            if not answered:
                result = Died(proc.exitcode)
            on_result(task, result)
            worker: tuple[Connection, multiprocessing.process.BaseProcess] | None = (conn, proc)
            if not proc.is_alive():
                conn.close()
                worker = self._start() if todo and not stop.caught else None
            if worker and todo and not stop.caught:
                self._give(worker, todo.pop())
            elif worker:
                self._idle.append(worker)

    def _close(self, kill: bool) -> None:
        """End every worker: ask idle ones to exit (or kill them all), then wait for them."""
        workers = [*self._idle, *((conn, proc) for conn, (proc, _) in self._busy.items())]
        for conn, proc in workers:
            if kill:
                proc.kill()
            else:
                try:
                    conn.send(None)
                except OSError:
                    pass
        for conn, proc in workers:
            proc.join(JOIN_S)
            if proc.is_alive():
                proc.kill()
                proc.join(JOIN_S)
            conn.close()
        self._busy.clear()
        self._idle.clear()
        self._lifeline.close()
        self._lifeline_end.close()
