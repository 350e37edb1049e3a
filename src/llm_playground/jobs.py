"""Background jobs: run an event generator in a thread, read its events from anywhere.

The training engine, LoRA fine-tuning and long evaluations are generators of events
that take a ``threading.Event`` stop signal. A :class:`JobManager` runs each one in a
daemon thread and keeps every event it yields, so that a web page can start a job,
forget about it across reruns and tabs, and poll ``events(job_id, since)`` for what is
new. Closing a browser tab never stops a job; ``stop(job_id)`` sets its stop signal.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

EventFactory = Callable[[threading.Event], Iterator[Any]]


@dataclass
class Job:
    """One background run: its events so far, and whether it is still going."""

    id: str
    kind: str
    label: str
    params: dict[str, Any]
    stop_event: threading.Event = field(default_factory=threading.Event)
    events: list[Any] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    error: str | None = None
    thread: threading.Thread | None = None
    error_traceback: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def running(self) -> bool:
        return self.finished_at is None

    def events_since(self, index: int) -> list[Any]:
        with self._lock:
            return self.events[index:]


class JobManager:
    """Owns the background jobs of one process (the app keeps one in ``st.cache_resource``)."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def start(self, kind: str, label: str, factory: EventFactory,
              params: dict[str, Any] | None = None, exclusive: bool = True) -> Job:
        """Start ``factory(stop_event)`` in a thread; with ``exclusive``, at most one running job of a kind.

        Starting an exclusive kind while one runs returns the running job instead of a
        second one, so a double click or a second tab never duplicates a run.
        """
        with self._lock:
            if exclusive:
                for job in self._jobs.values():
                    if job.kind == kind and job.running:
                        return job
            job = Job(id=f"{kind}-{next(self._ids)}", kind=kind, label=label, params=dict(params or {}))
            self._jobs[job.id] = job
        job.thread = threading.Thread(target=self._run, args=(job, factory), name=job.id, daemon=True)
        job.thread.start()
        return job

    def _run(self, job: Job, factory: EventFactory) -> None:
        try:
            for event in factory(job.stop_event):
                with job._lock:
                    job.events.append(event)
        except Exception as exc:  # surfaced to the page through job.error
            log.exception("job %s failed", job.id)
            job.error = f"{type(exc).__name__}: {exc}"
            job.error_traceback = traceback.format_exc()
        finally:
            job.finished_at = time.time()

    def get(self, job_id: str | None) -> Job | None:
        return self._jobs.get(job_id) if job_id else None

    def jobs(self, kind: str | None = None) -> list[Job]:
        with self._lock:
            return [j for j in self._jobs.values() if kind is None or j.kind == kind]

    def running(self, kind: str) -> Job | None:
        return next((j for j in self.jobs(kind) if j.running), None)

    def stop(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job:
            job.stop_event.set()

    def wait(self, job_id: str, timeout: float | None = None) -> bool:
        """Block until the job ends (for tests and the CLI); True when it ended."""
        job = self._jobs[job_id]
        if job.thread:
            job.thread.join(timeout)
        return not job.running
