"""Long work for the web page, run in a bounded pool and polled for progress.

At most `workers` jobs run at once and at most `queue` more wait; beyond that `submit` refuses
(the page says the server is busy) instead of piling work up. Finished jobs are kept for
download until `keep` newer ones have finished. A failing job never takes the server down:
a NicError becomes its one-line message, anything else "internal error: ...".
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from nic.errors import NicError
from nic.serve.compare import Progress

log = logging.getLogger("nic.serve")


class Busy(Exception):
    """Too many jobs running and waiting."""


@dataclass
class Job:
    id: str
    state: str = "queued"  # queued, running, done, error
    done: int = 0
    total: int = 1
    step: str = "waiting for a free worker"
    error: str = ""
    result: Any = None
    started: float = field(default_factory=time.perf_counter)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # the whole process's CPU time while it ran: the job's, with one worker

    def status(self) -> dict:
        out = {"id": self.id, "state": self.state, "done": self.done, "total": self.total, "step": self.step}
        if self.state == "error":
            out["error"] = self.error
        if self.state in ("done", "error"):
            out["seconds"], out["cpu_seconds"] = round(self.seconds, 3), round(self.cpu_seconds, 3)
        return out


class Jobs:
    def __init__(self, workers: int = 1, queue: int = 4, keep: int = 16):
        self.workers, self.queue, self.keep = workers, queue, keep
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="nic-serve")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def _pending(self) -> int:
        return sum(j.state in ("queued", "running") for j in self._jobs.values())

    def _check(self) -> None:
        if self._pending() >= self.workers + self.queue:
            raise Busy(f"the server is busy ({self.workers + self.queue} comparisons running or waiting); "
                       "try again in a moment")

    def check(self) -> None:
        """Raise Busy if a job submitted now would be refused: asked before an upload is read."""
        with self._lock:
            self._check()

    def running(self) -> bool:
        """Whether a job is being worked on now."""
        with self._lock:
            return any(j.state == "running" for j in self._jobs.values())

    def submit(self, work: Callable[[Progress], Any]) -> Job:
        """Queue `work(progress)`; its return value becomes the job's result."""
        with self._lock:
            self._check()
            job = Job(uuid.uuid4().hex)
            self._jobs[job.id] = job
            self._forget_old()
        self._pool.submit(self._run, job, work)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _forget_old(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.state in ("done", "error")]
        for k in finished[:max(0, len(finished) - self.keep)]:
            del self._jobs[k]

    def _run(self, job: Job, work: Callable[[Progress], Any]) -> None:
        def progress(done: int, total: int, step: str) -> None:
            job.done, job.total, job.step = done, total, step

        job.state, job.step, job.started = "running", "starting", time.perf_counter()
        cpu = time.process_time()
        result, error = None, ""
        try:
            result = work(progress)
        except NicError as e:
            error = str(e)
        except MemoryError:
            error = "out of memory"
        except Exception as e:  # a bug: the page gets one line, the log gets the traceback
            log.exception("job %s failed", job.id)
            error = f"internal error: {type(e).__name__}: {e}"
        with self._lock:
            job.seconds, job.cpu_seconds = time.perf_counter() - job.started, time.process_time() - cpu
            if error:
                job.error, job.state = error, "error"
            else:
                job.result, job.done, job.step, job.state = result, job.total, "done", "done"
            self._forget_old()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
