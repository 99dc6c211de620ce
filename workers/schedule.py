"""Periodic jobs, run by RQ's own scheduler (``rq worker --with-scheduler``) or in-process on the embedded default.

Each periodic run schedules the next one first, with a job id made of the job's name and its time slot, so two
workers that both schedule the next run schedule the same job, not two. A Redis restart loses every chain (the
machine's Redis keeps nothing on disk): each worker schedules them again every ``WORKER_MAINTENANCE_SECONDS``
(:func:`chain_keeping`), which for a chain still running schedules the run it had already scheduled.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from app.queue import PeriodicJob, RQQueue, get_queue, resolve

log = logging.getLogger(__name__)


def periodic_jobs(config: Any) -> list[PeriodicJob]:
    from workers import jobs

    return [
        PeriodicJob("fetch", jobs.fetch_all, timedelta(seconds=config["FETCH_INTERVAL_SECONDS"]), "high"),
        PeriodicJob("dispatch", jobs.dispatch_due, timedelta(seconds=config["DISPATCH_INTERVAL_SECONDS"]), "urgent"),
        PeriodicJob("analytics", jobs.refresh_analytics, timedelta(seconds=config["ANALYTICS_INTERVAL_SECONDS"]),
                    "low"),
        PeriodicJob("experiments", jobs.check_experiments,
                    timedelta(seconds=config["EXPERIMENTS_INTERVAL_SECONDS"]), "low"),
    ]


def slot_job_id(job: PeriodicJob, now: float | None = None) -> tuple[str, timedelta]:
    """The id of the next run of ``job`` and how long until it is due."""
    now = time.time() if now is None else now
    every = job.every.total_seconds()
    next_slot = (int(now // every) + 1) * every
    return f"periodic-{job.name}-{int(next_slot)}", timedelta(seconds=max(next_slot - now, 0.0))


def schedule_next(queue: RQQueue, job: PeriodicJob, now: float | None = None) -> str:
    job_id, delay = slot_job_id(job, now)
    queue.enqueue_in(delay, run_periodic, job.name, queue=job.queue, job_id=job_id)
    return job_id


def ensure_scheduled(queue: RQQueue, jobs: list[PeriodicJob]) -> list[str]:
    """Called when a worker starts: make sure every periodic chain has its next run scheduled."""
    return [schedule_next(queue, job) for job in jobs]


def chain_keeping(base: type[Any], queue: RQQueue, jobs: list[PeriodicJob]) -> type[Any]:
    """``base`` (an RQ worker class) that also schedules the periodic chains in its maintenance."""

    class ChainKeepingWorker(base):  # type: ignore[misc,valid-type]
        def run_maintenance_tasks(self) -> None:
            super().run_maintenance_tasks()
            try:
                ensure_scheduled(queue, jobs)
            except Exception as exc:  # Redis away: the next maintenance tries again
                log.warning("could not schedule the periodic jobs: %s", exc)

    ChainKeepingWorker.__name__ = f"ChainKeeping{base.__name__}"
    return ChainKeepingWorker


def run_periodic(name: str) -> Any:
    from workers.context import job_context

    with job_context() as app:
        jobs = {job.name: job for job in periodic_jobs(app.config)}
        job = jobs[name]
        queue = get_queue()
        if isinstance(queue, RQQueue):
            schedule_next(queue, job)  # first, so a crash in this run does not end the chain
        return resolve(job.func)()
