"""Background jobs: run an event generator in a thread, read its events from anywhere.

Every long run is a generator of :mod:`llm_playground.core.events` that takes a
``threading.Event`` stop signal. A :class:`JobManager` runs each one in a daemon thread
and keeps what it yields, so that a web page can start a job, forget about it across
reruns and tabs, and poll it. Closing a browser tab never stops a job; ``stop`` does.

Shared by a class, one process serves many people, so:

- every job has an ``owner`` (one browser): others can see that the machine is busy,
  never another person's job or its controls;
- at most ``max_heavy`` heavy jobs (training, fine-tuning, long evaluations) run at once;
  the rest wait in a first-come queue and each owner sees their place in it;
- finished jobs are evicted after ``keep_finished_s`` seconds or when more than
  ``max_finished`` are kept, and a job keeps at most ``max_events`` events (the oldest
  progress events are thinned first), so memory stays bounded however long the server runs.

A learner alone on a laptop sees none of this: their jobs start at once.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from llm_playground.core.events import Progress

log = logging.getLogger(__name__)

EventFactory = Callable[[threading.Event], Iterator[Any]]
ENV_MAX_JOBS = "LLM_PLAYGROUND_MAX_JOBS"
LOCAL = "local"


def default_max_heavy() -> int:
    """Heavy jobs at once: ``$LLM_PLAYGROUND_MAX_JOBS``, else half the cores (at least 2)."""
    value = os.environ.get(ENV_MAX_JOBS, "").strip()
    if value.isdigit() and int(value) >= 1:
        return int(value)
    return max(2, (os.cpu_count() or 2) // 2)


@dataclass
class Job:
    """One background run: its events so far, and where it stands."""

    id: str
    kind: str
    label: str
    owner: str = LOCAL
    heavy: bool = True
    params: dict[str, Any] = field(default_factory=dict)
    stop_event: threading.Event = field(default_factory=threading.Event)
    events: list[Any] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    error_traceback: str | None = None
    thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def queued(self) -> bool:
        """Waiting for a free slot (heavy jobs only)."""
        return self.started_at is None and self.finished_at is None

    @property
    def running(self) -> bool:
        """Not finished yet: queued or running."""
        return self.finished_at is None

    @property
    def stopped(self) -> bool:
        return self.stop_event.is_set()

    def snapshot(self) -> list[Any]:
        """A copy of the events so far."""
        with self._lock:
            return list(self.events)

    def events_since(self, index: int) -> list[Any]:
        with self._lock:
            return self.events[index:]


@dataclass(frozen=True)
class Load:
    """How busy the machine is, without saying whose jobs they are."""

    running: int
    queued: int
    max_heavy: int


class JobManager:
    """Owns the background jobs of one process (the app keeps one in ``st.cache_resource``)."""

    def __init__(
        self,
        max_heavy: int | None = None,
        keep_finished_s: float = 2 * 3600,
        max_finished: int = 200,
        max_events: int = 20_000,
    ) -> None:
        self.max_heavy = max_heavy or default_max_heavy()
        self.keep_finished_s = keep_finished_s
        self.max_finished = max_finished
        self.max_events = max_events
        self._jobs: dict[str, Job] = {}
        self._queue: list[Job] = []  # heavy jobs waiting, first come first served
        self._lock = threading.Lock()
        self._slot_freed = threading.Condition(self._lock)
        self._ids = itertools.count(1)

    # --- starting -----------------------------------------------------------------------

    def start(
        self,
        kind: str,
        label: str,
        factory: EventFactory,
        params: dict[str, Any] | None = None,
        *,
        owner: str = LOCAL,
        heavy: bool = True,
        exclusive: bool = True,
    ) -> Job:
        """Start ``factory(stop_event)`` in a thread (after a queue wait when heavy and busy).

        With ``exclusive``, an owner has at most one unfinished job of a kind: starting
        again returns that job, so a double click or a second tab never duplicates a run.
        """
        with self._lock:
            self._evict_locked()
            if exclusive:
                for job in self._jobs.values():
                    if job.kind == kind and job.owner == owner and job.running:
                        return job
            job = Job(
                id=f"{kind}-{next(self._ids)}",
                kind=kind,
                label=label,
                owner=owner,
                heavy=heavy,
                params=dict(params or {}),
            )
            self._jobs[job.id] = job
            if heavy:
                self._queue.append(job)
        job.thread = threading.Thread(
            target=self._run, args=(job, factory), name=job.id, daemon=True
        )
        job.thread.start()
        return job

    def _wait_for_slot(self, job: Job) -> bool:
        """Block until ``job`` is first in the queue and a heavy slot is free; False if stopped."""
        with self._slot_freed:
            while True:
                if job.stop_event.is_set():
                    self._queue.remove(job)
                    self._slot_freed.notify_all()
                    return False
                running = sum(
                    1 for j in self._jobs.values() if j.heavy and j.started_at and j.running
                )
                if self._queue and self._queue[0] is job and running < self.max_heavy:
                    self._queue.pop(0)
                    job.started_at = time.time()
                    self._slot_freed.notify_all()
                    return True
                self._slot_freed.wait(timeout=0.5)

    def _run(self, job: Job, factory: EventFactory) -> None:
        try:
            if job.heavy and not self._wait_for_slot(job):
                return
            job.started_at = job.started_at or time.time()
            for event in factory(job.stop_event):
                self._append(job, event)
        except Exception as exc:  # surfaced to the page through job.error
            log.exception("job %s failed", job.id)
            job.error = f"{type(exc).__name__}: {exc}"
            job.error_traceback = traceback.format_exc()
        finally:
            with self._slot_freed:
                job.finished_at = time.time()
                self._slot_freed.notify_all()

    def _append(self, job: Job, event: Any) -> None:
        with job._lock:
            job.events.append(event)
            if len(job.events) > self.max_events:
                # Thin the oldest half of the progress events; keep every other kind.
                progress = [i for i, e in enumerate(job.events) if isinstance(e, Progress)]
                drop = set(progress[: len(progress) // 2 : 2])
                job.events = [e for i, e in enumerate(job.events) if i not in drop]

    # --- reading ------------------------------------------------------------------------

    def get(self, job_id: str | None, owner: str | None = None) -> Job | None:
        """The job with this id; None when it is gone or belongs to someone else."""
        job = self._jobs.get(job_id) if job_id else None
        if job is None or (owner is not None and job.owner != owner):
            return None
        return job

    def jobs(self, kind: str | None = None, owner: str | None = None) -> list[Job]:
        with self._lock:
            self._evict_locked()
            return [
                j
                for j in self._jobs.values()
                if (kind is None or j.kind == kind) and (owner is None or j.owner == owner)
            ]

    def running(self, kind: str, owner: str | None = None) -> Job | None:
        return next((j for j in self.jobs(kind, owner) if j.running), None)

    def queue_position(self, job: Job) -> int | None:
        """1 for the next job to start; None when the job is not waiting."""
        with self._lock:
            return self._queue.index(job) + 1 if job in self._queue else None

    def load(self) -> Load:
        with self._lock:
            running = sum(1 for j in self._jobs.values() if j.heavy and j.started_at and j.running)
            return Load(running=running, queued=len(self._queue), max_heavy=self.max_heavy)

    # --- controlling --------------------------------------------------------------------

    def stop(self, job_id: str, owner: str | None = None) -> bool:
        """Ask a job to stop (a queued one leaves the queue); only its owner may."""
        job = self.get(job_id, owner)
        if job is None:
            return False
        job.stop_event.set()
        with self._slot_freed:
            self._slot_freed.notify_all()
        return True

    def wait(self, job_id: str, timeout: float | None = None) -> bool:
        """Block until the job ends (for tests and the CLI); True when it ended."""
        job = self._jobs[job_id]
        if job.thread:
            job.thread.join(timeout)
        return not job.running

    def _evict_locked(self) -> None:
        now = time.time()
        finished = sorted(
            (j for j in self._jobs.values() if not j.running), key=lambda j: j.finished_at or 0.0
        )
        too_many = max(0, len(finished) - self.max_finished)
        for index, job in enumerate(finished):
            if index < too_many or now - (job.finished_at or now) > self.keep_finished_s:
                del self._jobs[job.id]
