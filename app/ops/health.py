"""Liveness and readiness checks, cheap enough to be asked every few seconds.

``/healthz`` only proves the process answers. ``/readyz`` asks, in order: the database (``SELECT 1``), Redis (a
``PING``, when the app queues on Redis; the embedded default queues in-process and says so), and the queue lag: the
age of the oldest due outbox row nobody has claimed yet, and of the oldest job waiting in the RQ queues. Each check
says what it found; one failing makes the whole answer "not ready". Nothing here reads customers' data, and a
failure's detail names the kind of error only (the full error goes to the log, which may name hosts).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

log = logging.getLogger(__name__)

OK, FAIL, SKIPPED = "ok", "fail", "skipped"
#: how long a Redis connection or answer may take before Redis counts as unreachable
REDIS_TIMEOUT_SECONDS = 2.0


@dataclass
class Check:
    name: str
    status: str
    detail: str = ""
    values: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, **({"detail": self.detail} if self.detail else {}), **self.values}


@dataclass
class Readiness:
    checks: list[Check]

    @property
    def ready(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    @property
    def failing(self) -> list[str]:
        return [c.name for c in self.checks if c.status == FAIL]

    def as_dict(self) -> dict[str, Any]:
        return {"status": "ready" if self.ready else "not ready", "failing": self.failing,
                "checks": {c.name: c.as_dict() for c in self.checks}}


def liveness() -> dict[str, Any]:
    """The process answers: no database, no Redis."""
    return {"status": "ok"}


def check_database(engine: sa.Engine) -> Check:
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # any failure to reach it is "not ready", said so
        log.warning("readiness: the database did not answer: %s", exc)
        return Check("database", FAIL, f"database unreachable ({type(exc).__name__})")
    return Check("database", OK, engine.dialect.name)


def redis_client(url: str) -> Any:
    from redis import Redis

    return Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS)


def check_redis(redis_url: str | None) -> Check:
    if not redis_url:
        return Check("redis", SKIPPED, "not configured: the embedded default runs jobs in-process")
    client = redis_client(redis_url)
    try:
        client.ping()
    except Exception as exc:
        log.warning("readiness: Redis did not answer: %s", exc)
        return Check("redis", FAIL, f"Redis unreachable ({type(exc).__name__})")
    finally:
        client.close()
    return Check("redis", OK)


def oldest_due_outbox_age(engine: sa.Engine, now: datetime) -> float | None:
    """Seconds since the oldest due, unclaimed outbox row fell due (None: nothing is due). One indexed lookup
    (``ix_outbox_due``: state, scheduled_for)."""
    from app.models import OutboxMessage
    from app.outbox.states import OutboxState

    with engine.connect() as conn:
        oldest = conn.execute(
            sa.select(sa.func.min(OutboxMessage.scheduled_for))
            .where(OutboxMessage.state == OutboxState.SCHEDULED, OutboxMessage.scheduled_for <= now)
        ).scalar()
    if oldest is None:
        return None
    if oldest.tzinfo is None:  # SQLite's min() comes back as the stored text, parsed without a zone
        oldest = oldest.replace(tzinfo=UTC)
    return max(0.0, (now - oldest).total_seconds())


def oldest_waiting_job_age(redis_url: str, queue_names: tuple[str, ...], now: datetime) -> dict[str, float | None]:
    """Per RQ queue: seconds the job at its head has waited (None: the queue is empty)."""
    from rq import Queue

    client = redis_client(redis_url)
    try:
        ages: dict[str, float | None] = {}
        for name in queue_names:
            queue = Queue(name, connection=client)
            head = None
            for job_id in queue.get_job_ids(0, 5):  # a job deleted under us leaves its id: look a little further
                head = queue.fetch_job(job_id)
                if head is not None:
                    break
            if head is None or head.enqueued_at is None:
                ages[name] = None
            else:
                ages[name] = max(0.0, (now - head.enqueued_at).total_seconds())
        return ages
    finally:
        client.close()


def check_queue_lag(engine: sa.Engine, redis_url: str | None, queue_names: tuple[str, ...], *, business_now: datetime,
                    real_now: datetime, max_lag_seconds: float, database_ok: bool, redis_ok: bool) -> Check:
    """The oldest due outbox row (business clock) and the oldest waiting RQ job (real clock) against the bound."""
    values: dict[str, Any] = {"max_lag_seconds": max_lag_seconds}
    problems, skipped = [], []
    if database_ok:
        try:
            outbox = oldest_due_outbox_age(engine, business_now)
        except Exception as exc:
            log.warning("readiness: could not read the outbox's lag: %s", exc)
            problems.append(f"outbox lag unreadable ({type(exc).__name__})")
            outbox = None
        values["outbox_oldest_due_seconds"] = _round(outbox)
        if outbox is not None and outbox > max_lag_seconds:
            problems.append(f"the oldest due outbox message has waited {outbox:.0f} s (over {max_lag_seconds:.0f} s)")
    else:
        skipped.append("outbox: database unreachable")
    if redis_url and redis_ok:
        try:
            jobs = oldest_waiting_job_age(redis_url, queue_names, real_now)
        except Exception as exc:
            log.warning("readiness: could not read the RQ queues: %s", exc)
            problems.append(f"RQ queues unreadable ({type(exc).__name__})")
            jobs = {}
        values["rq_oldest_waiting_seconds"] = {name: _round(age) for name, age in jobs.items()}
        late = {name: age for name, age in jobs.items() if age is not None and age > max_lag_seconds}
        for name, age in sorted(late.items()):
            problems.append(f"the oldest job in RQ queue {name!r} has waited {age:.0f} s "
                            f"(over {max_lag_seconds:.0f} s)")
    elif redis_url:
        skipped.append("RQ queues: Redis unreachable")
    else:
        values["rq_oldest_waiting_seconds"] = None  # in-process: jobs run at once, nothing waits
    if problems:
        return Check("queue_lag", FAIL, "; ".join(problems), values)
    if skipped and not database_ok:
        return Check("queue_lag", SKIPPED, "; ".join(skipped), values)
    return Check("queue_lag", OK, "; ".join(skipped), values)


def readiness(engine: sa.Engine, redis_url: str | None, queue_names: tuple[str, ...], *,
              business_now: Callable[[], datetime], max_lag_seconds: float) -> Readiness:
    database = check_database(engine)
    redis = check_redis(redis_url)
    lag = check_queue_lag(engine, redis_url, queue_names, business_now=business_now(), real_now=datetime.now(UTC),
                          max_lag_seconds=max_lag_seconds, database_ok=database.status == OK,
                          redis_ok=redis.status == OK)
    return Readiness([database, redis, lag])


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)
