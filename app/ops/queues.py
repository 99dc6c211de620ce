"""What the RQ queues hold, for the admin's read-only queue page: per queue the jobs waiting, running, failed
(with their exception) and scheduled. Nothing here changes a job: a requeue or a delete would need an audit entry,
and the dispatcher's own retries already cover what a person would do by hand."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: how many jobs of each kind a page lists per queue (the counts are always complete)
LIST_LIMIT = 50
#: how much of a failed job's traceback is shown: its last lines say what went wrong
TRACEBACK_LINES = 12


@dataclass
class JobInfo:
    id: str
    func: str
    args: str
    at: datetime | None = None
    error: str | None = None


@dataclass
class QueueInfo:
    name: str
    waiting: int
    running: int
    failed: int
    scheduled: int
    waiting_jobs: list[JobInfo] = field(default_factory=list)
    failed_jobs: list[JobInfo] = field(default_factory=list)
    scheduled_jobs: list[JobInfo] = field(default_factory=list)


def overview(connection: Any, queue_names: tuple[str, ...], limit: int = LIST_LIMIT) -> list[QueueInfo]:
    from rq import Queue
    from rq.job import Job

    found = []
    for name in queue_names:
        queue = Queue(name, connection=connection)
        failed, scheduled = queue.failed_job_registry, queue.scheduled_job_registry
        info = QueueInfo(name, waiting=queue.count, running=queue.started_job_registry.count, failed=failed.count,
                         scheduled=scheduled.count)
        info.waiting_jobs = [_job(j, j.enqueued_at) for j in queue.get_jobs(0, limit)]
        failed_ids = failed.get_job_ids(0, limit - 1)
        info.failed_jobs = [_job(j, j.ended_at, error=_error(j)) for j in
                            Job.fetch_many(failed_ids, connection=connection) if j is not None]
        info.failed_jobs.sort(key=lambda j: j.at.timestamp() if j.at else 0, reverse=True)  # newest first
        scheduled_ids = scheduled.get_job_ids(0, limit - 1)
        jobs = Job.fetch_many(scheduled_ids, connection=connection)
        info.scheduled_jobs = [_job(j, _scheduled_time(scheduled, j)) for j in jobs if j is not None]
        info.scheduled_jobs.sort(key=lambda j: j.at.timestamp() if j.at else 0)
        found.append(info)
    return found


def _job(job: Any, at: datetime | None, error: str | None = None) -> JobInfo:
    try:
        func = job.func_name
    except Exception:  # a job whose payload cannot be read: say so, do not fail the page
        func = "(unreadable)"
    try:
        args = ", ".join([*map(repr, job.args or ()), *(f"{k}={v!r}" for k, v in (job.kwargs or {}).items())])
    except Exception:
        args = ""
    return JobInfo(job.id, func, args[:200], at, error)


def _error(job: Any) -> str | None:
    result = job.latest_result()
    text = getattr(result, "exc_string", None) if result is not None else None
    if not text:
        return None
    return "\n".join(text.strip().splitlines()[-TRACEBACK_LINES:])


def _scheduled_time(registry: Any, job: Any) -> datetime | None:
    try:
        return registry.get_scheduled_time(job)  # type: ignore[no-any-return]
    except Exception:
        return None
