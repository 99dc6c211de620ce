"""Prometheus metrics (``prometheus-client``): counters and histograms bumped where things happen, and gauges read
from the database when ``/metrics`` is scraped.

Counted where it happens (small calls in the code that already records the event):
- ``recoup_messages_sent_total{channel}`` and ``recoup_message_send_failures_total{channel,outcome}``
  (app.outbox.record; outcome: permanent, retryable, unknown, error);
- ``recoup_provider_call_seconds{provider,operation}`` (histogram: a channel's send in app.outbox.send, a gateway
  charge in app.payments.charges);
- ``recoup_webhooks_total{provider,outcome,status}`` (app.web.hooks; outcome: accepted or refused);
- ``recoup_payment_outcomes_total{initiator,method,outcome}`` (app.payments.charges: approved, declined, error,
  unknown);
- ``recoup_job_duration_seconds{job,outcome}`` (histogram, workers.jobs; outcome: ok or error).

Read from the database at scrape time (one grouped query each, on indexed columns):
- ``recoup_fetch_lag_seconds{account,kind}``: now minus how far the account's fetch cursor has safely got (it moves
  only after a fetch window is committed), and ``recoup_fetch_last_ok{account,kind}`` (1 when its last run
  succeeded);
- ``recoup_outbox_messages{state,age}``: outbox rows not settled yet, by state and by how long ago they fell due
- ``recoup_webhook_inbox{provider,state}``: stored webhooks waiting for a worker, late, or set aside (app.inbox)
  (``not_due`` for rows still waiting for their time).

Several processes (gunicorn workers, ``flask worker``s) each count on their own. With ``PROMETHEUS_MULTIPROC_DIR``
set (to an empty folder, the same for every process on the host, emptied at each start) prometheus-client keeps
the counts in files there and ``/metrics`` adds them up across processes; without it each process shows only its own
counts (fine for the embedded default, which is one process). See docs/operations.md.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, TypeVar

import sqlalchemy as sa
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.models.types import as_utc
from app.outbox.states import OutboxState as S

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

MESSAGES_SENT = Counter("recoup_messages_sent", "Messages a provider accepted, by channel", ["channel"])
SEND_FAILURES = Counter("recoup_message_send_failures",
                        "Send attempts a provider did not accept, by channel and outcome", ["channel", "outcome"])
PROVIDER_LATENCY = Histogram(
    "recoup_provider_call_seconds", "How long a call to a provider took (channel sends, gateway charges)",
    ["provider", "operation"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
WEBHOOKS = Counter("recoup_webhooks", "Provider webhooks received, by provider and what we answered",
                   ["provider", "outcome", "status"])
PAYMENTS = Counter("recoup_payment_outcomes", "Charges attempted, by who started them, method and outcome",
                   ["initiator", "method", "outcome"])
JOB_DURATION = Histogram(
    "recoup_job_duration_seconds", "How long a job ran, by job and outcome", ["job", "outcome"],
    buckets=(0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800))

#: outbox states counted in ``recoup_outbox_messages``: rows something will still happen to
DEPTH_STATES: tuple[str, ...] = tuple(s.value for s in (S.HELD, S.SCHEDULED, S.PAUSED, S.CLAIMED, S.SENDING,
                                                         S.DELIVERING, S.UNKNOWN, S.REVIEW))
#: ``age`` labels: how long ago a row fell due, at most this long (the last one: longer)
AGE_BUCKETS: tuple[tuple[str, timedelta | None], ...] = (
    ("not_due", timedelta(0)), ("lt_1m", timedelta(minutes=1)), ("1m_5m", timedelta(minutes=5)),
    ("5m_15m", timedelta(minutes=15)), ("15m_1h", timedelta(hours=1)), ("1h_6h", timedelta(hours=6)),
    ("6h_24h", timedelta(hours=24)), ("gt_24h", None),
)

F = TypeVar("F", bound=Callable[..., Any])


# -- counted where it happens ------------------------------------------------------------------------------------


def count_send(channel: str, outcome: str) -> None:
    """One provider answer to a send: ``accepted`` counts as sent, anything else as a failure of that kind."""
    if outcome == "accepted":
        MESSAGES_SENT.labels(str(channel)).inc()
    else:
        SEND_FAILURES.labels(str(channel), str(outcome)).inc()


@contextmanager
def provider_call(provider: str, operation: str) -> Iterator[None]:
    """Times a call to a provider (however it ends)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        PROVIDER_LATENCY.labels(str(provider), operation).observe(time.perf_counter() - started)


def count_webhook(provider: str, status: int) -> None:
    WEBHOOKS.labels(provider, "accepted" if status < 400 else "refused", str(status)).inc()


def count_payment(initiator: str | None, method: str | None, outcome: str) -> None:
    PAYMENTS.labels(initiator or "unknown", method or "unknown", outcome).inc()


def timed_job(func: F) -> F:
    """Decorates an RQ job: its duration, by outcome. ``functools.wraps`` keeps the import path RQ stores."""

    @wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        started, outcome = time.perf_counter(), "error"
        try:
            result = func(*args, **kwargs)
            outcome = "ok"
            return result
        finally:
            JOB_DURATION.labels(func.__name__, outcome).observe(time.perf_counter() - started)

    return run  # type: ignore[return-value]


# -- read at scrape time -----------------------------------------------------------------------------------------


def fetch_lag(conn: sa.Connection, now: datetime) -> list[Metric]:
    from app.models import FetchCursor, GatewayAccount

    lag = GaugeMetricFamily("recoup_fetch_lag_seconds",
                            "Seconds since the point a gateway account's fetch has safely got to (its cursor)",
                            labels=["account", "kind"])
    last_ok = GaugeMetricFamily("recoup_fetch_last_ok", "1 when the account's last fetch run succeeded, else 0",
                                labels=["account", "kind"])
    rows = conn.execute(
        sa.select(GatewayAccount.name, FetchCursor.kind, FetchCursor.position, FetchCursor.last_status)
        .join(GatewayAccount, GatewayAccount.id == FetchCursor.gateway_account_id)
        .where(GatewayAccount.enabled.is_(True))
    ).all()
    for name, kind, position, status in rows:
        if position is not None:
            lag.add_metric([name, kind], max(0.0, (now - as_utc(position)).total_seconds()))
        last_ok.add_metric([name, kind], 1.0 if status == "ok" else 0.0)
    return [lag, last_ok]


def outbox_depth(conn: sa.Connection, now: datetime) -> Metric:
    """One grouped query over ``ix_outbox_due`` (state, scheduled_for); every state x age is reported, 0 when
    none, so an alert can rely on the series being there."""
    from app.models import OutboxMessage

    age = sa.case(*[(OutboxMessage.scheduled_for > now - bound, label)
                    for label, bound in AGE_BUCKETS if bound is not None],
                  else_=AGE_BUCKETS[-1][0])
    counts = {(state, bucket): n for state, bucket, n in conn.execute(
        sa.select(OutboxMessage.state, age, sa.func.count())
        .where(OutboxMessage.state.in_(DEPTH_STATES)).group_by(OutboxMessage.state, age))}
    family = GaugeMetricFamily("recoup_outbox_messages", "Outbox rows not settled yet, by state and how long ago "
                               "they fell due", labels=["state", "age"])
    for state in DEPTH_STATES:
        for bucket, _ in AGE_BUCKETS:
            family.add_metric([state, bucket], float(counts.get((state, bucket), 0)))
    return family


def webhook_inbox(conn: sa.Connection, now: datetime) -> Metric:
    """Stored webhooks not applied yet (``waiting``, and those ``late``: past the sweep's wait) and those given up on
    (``set_aside``: tried MAX_ATTEMPTS times), by provider (app.inbox); over ``ix_inbound_events_pending``."""
    from app import inbox
    from app.models import InboundEvent

    family = GaugeMetricFamily("recoup_webhook_inbox", "Stored provider webhooks: waiting for a worker, late, or "
                               "set aside after failing", labels=["provider", "state"])
    table = InboundEvent.__table__
    pending = table.c.processed_at.is_(None)
    state = sa.case((pending & (table.c.received_at < now - inbox.SWEEP_AFTER), "late"),
                    (pending, "waiting"), else_="set_aside")
    counts = {(provider, label): n for provider, label, n in conn.execute(
        sa.select(table.c.provider, state, sa.func.count())
        .where(table.c.provider.in_(inbox.PROVIDERS),
               pending | (table.c.attempts >= inbox.MAX_ATTEMPTS))
        .group_by(table.c.provider, state))}
    for provider in inbox.PROVIDERS:
        for label in ("waiting", "late", "set_aside"):
            family.add_metric([provider, label], float(counts.get((provider, label), 0)))
    return family


class DatabaseCollector(Collector):
    """The scrape-time gauges, read with one short connection."""

    def __init__(self, engine: sa.Engine, business_now: Callable[[], datetime]) -> None:
        self.engine = engine
        self.business_now = business_now

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("recoup_metrics_database_up", "1 when the scrape could read the database")
        try:
            with self.engine.connect() as conn:
                found = [*fetch_lag(conn, datetime.now(UTC)), outbox_depth(conn, self.business_now()),
                         webhook_inbox(conn, datetime.now(UTC))]
        except Exception:
            log.exception("metrics: could not read the database")
            up.add_metric([], 0.0)
            return [up]
        up.add_metric([], 1.0)
        return [*found, up]


class _Delegate(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition(database: Collector, multiproc_dir: str | None = None) -> bytes:
    """The text a scrape gets: the counted metrics (every process's, with a multiprocess folder) and the database's
    gauges."""
    registry = CollectorRegistry(auto_describe=False)
    if multiproc_dir:
        from prometheus_client.multiprocess import MultiProcessCollector

        MultiProcessCollector(registry, path=multiproc_dir)
    else:
        registry.register(_Delegate(REGISTRY))
    registry.register(database)
    return generate_latest(registry)

