"""Job queues: RQ on Redis in production, an in-process queue on the embedded default.

Four queues, most urgent first: ``urgent``, ``high``, ``default``, ``low``. Jobs are passed as the functions
themselves (``queue.enqueue(jobs.plan_cases, ids)``), so a renamed or moved job fails at import, not in a worker;
RQ stores their import path. Jobs take ids, not objects. Periodic jobs use RQ's own scheduler: each run
schedules the next with a fixed job id (``periodic-<name>-<slot>``), so however many workers start, there is one chain.
On the embedded default the same jobs run in-process: ``enqueue`` runs the job at once, and a daemon thread runs the
periodic ones.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

log = logging.getLogger(__name__)

QUEUE_NAMES = ("urgent", "high", "default", "low")
#: RQ's default of 180 s would kill a long fetch mid-window; jobs are idempotent, so a generous bound is safe
JOB_TIMEOUT = 1800


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    func: Callable[..., Any] | str  # the job function (an import path still resolves)
    every: timedelta
    queue: str = "default"


def resolve(func: str | Callable[..., Any]) -> Callable[..., Any]:
    """The job function: ``func`` itself, or what its import path names."""
    if callable(func):
        return func
    module, _, attr = func.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def func_path(func: str | Callable[..., Any]) -> str:
    """The import path RQ stores for a job."""
    return func if isinstance(func, str) else f"{func.__module__}.{func.__qualname__}"


class JobQueue(Protocol):
    kind: str

    def enqueue(
        self, func: str | Callable[..., Any], *args: Any, queue: str = "default", job_id: str | None = None,
        retries: tuple[int, ...] = (), **kw: Any
    ) -> Any:
        """Run ``func(*args, **kw)`` on ``queue``; ``retries``: seconds to wait before each new try of a job that
        failed (a database restarting under it), on Redis (in-process jobs run at once, and raise)."""

    def enqueue_in(
        self,
        delay: timedelta,
        func: str | Callable[..., Any],
        *args: Any,
        queue: str = "default",
        job_id: str | None = None,
        **kw: Any,
    ) -> Any: ...

    def enqueue_once(self, key: str, func: str | Callable[..., Any], *args: Any, queue: str = "default") -> Any:
        """Enqueue ``func(*args)`` unless a job enqueued under ``key`` has not started yet (it calls
        :meth:`started` first): a burst of callers wakes one job, not one each."""

    def started(self, key: str) -> None:
        """Called by a job enqueued with :meth:`enqueue_once` before it reads its work: a caller from now on enqueues
        a new one."""


def check_queue_name(queue: str) -> str:
    if queue not in QUEUE_NAMES:
        raise ValueError(f"unknown queue {queue!r}; queues are {', '.join(QUEUE_NAMES)}")
    return queue


class InProcessQueue:
    """Runs each job at once, in the caller's thread (and app context). Delayed jobs run on a timer thread."""

    kind = "in-process"

    def __init__(self, app: Any = None) -> None:
        self.app = app
        self.ran: list[tuple[str, str]] = []  # (queue, func path), newest last: handy for tests and the demo log

    def enqueue(self, func, *args, queue="default", job_id=None, retries=(), **kw):  # type: ignore[no-untyped-def]
        check_queue_name(queue)
        self.ran.append((queue, func_path(func)))
        return resolve(func)(*args, **kw)

    def enqueue_in(self, delay, func, *args, queue="default", job_id=None, **kw):  # type: ignore[no-untyped-def]
        check_queue_name(queue)
        app = self.app

        def run() -> None:
            try:
                if app is not None:
                    with app.app_context():
                        self.enqueue(func, *args, queue=queue, **kw)
                else:
                    self.enqueue(func, *args, queue=queue, **kw)
            except Exception:
                log.exception("in-process delayed job %s failed", func_path(func))

        timer = threading.Timer(delay.total_seconds(), run)
        timer.daemon = True
        timer.start()
        return timer

    def enqueue_once(self, key, func, *args, queue="default"):  # type: ignore[no-untyped-def]
        return self.enqueue(func, *args, queue=queue)  # it runs at once: nothing can be waiting

    def started(self, key: str) -> None:
        pass


class RQQueue:
    """The four RQ queues on one Redis connection; ``connection=`` passed explicitly everywhere (RQ 2)."""

    kind = "rq"

    def __init__(self, redis_url: str) -> None:
        from redis import Redis
        from rq import Queue

        self.redis_url = redis_url
        self.connection = Redis.from_url(redis_url)
        self.queues = {name: Queue(name, connection=self.connection) for name in QUEUE_NAMES}
        self._once_at: dict[str, float] = {}  # enqueue_once: when this process last enqueued under each key

    def enqueue(self, func, *args, queue="default", job_id=None, retries=(), **kw):  # type: ignore[no-untyped-def]
        from rq import Retry

        return self.queues[check_queue_name(queue)].enqueue(
            func_path(func), args=args, kwargs=kw, job_id=job_id, result_ttl=3600, failure_ttl=7 * 86400,
            job_timeout=JOB_TIMEOUT, retry=Retry(max=len(retries), interval=list(retries)) if retries else None,
        )

    def enqueue_in(self, delay, func, *args, queue="default", job_id=None, **kw):  # type: ignore[no-untyped-def]
        return self.queues[check_queue_name(queue)].enqueue_in(
            delay, func_path(func), args=args, kwargs=kw, job_id=job_id, result_ttl=3600, failure_ttl=7 * 86400,
            job_timeout=JOB_TIMEOUT,
        )

    #: how long an enqueue_once mark holds if its job never starts (lost with a Redis restart, say): then the next
    #: caller enqueues again
    ONCE_SECONDS = 60
    #: a process that enqueued under a key this recently does not ask Redis again (a burst's callers, a few ms
    #: apart): the job it enqueued has not started, or has just started and looks again before it ends (its caller
    #: says so, e.g. app.inbox.SETTLE_SECONDS)
    ONCE_QUIET_SECONDS = 0.05

    def enqueue_once(self, key, func, *args, queue="default"):  # type: ignore[no-untyped-def]
        import time

        now = time.monotonic()
        if now - self._once_at.get(key, -1e9) < self.ONCE_QUIET_SECONDS:
            return None
        self._once_at[key] = now  # from here on a job is waiting: this one, or the one whose mark is set
        if self.connection.set(f"recoup:once:{key}", 1, nx=True, ex=self.ONCE_SECONDS):
            return self.enqueue(func, *args, queue=queue)
        return None

    def started(self, key: str) -> None:
        self._once_at.pop(key, None)
        self.connection.delete(f"recoup:once:{key}")

    def ordered_queues(self) -> list[Any]:
        return [self.queues[name] for name in QUEUE_NAMES]


def make_queue(app: Any) -> JobQueue:
    url = app.config.get("REDIS_URL")
    return RQQueue(url) if url else InProcessQueue(app)


def get_queue() -> JobQueue:
    from flask import current_app

    return current_app.extensions["recoup.queue"]  # type: ignore[no-any-return]


class InProcessScheduler:
    """Runs the periodic jobs on a daemon thread, for the embedded default (``make demo``)."""

    def __init__(self, app: Any, jobs: list[PeriodicJob]) -> None:
        self.app = app
        self.jobs = jobs
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for job in self.jobs:
            thread = threading.Thread(target=self._loop, args=(job,), name=f"periodic-{job.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()

    def _loop(self, job: PeriodicJob) -> None:
        while not self._stop.wait(job.every.total_seconds()):
            try:
                with self.app.app_context():
                    resolve(job.func)()
            except Exception:
                log.exception("periodic job %s failed", job.name)
