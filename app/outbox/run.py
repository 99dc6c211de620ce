"""The periodic dispatch run: housekeeping, then claim, prepare, send and record until nothing is due."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import Flask, current_app

from app.extensions import db
from app.models import OutboxMessage
from app.outbox.batch import Attempted, Ready, add_event
from app.outbox.claim import Heartbeat, claim_due, claim_one, new_token
from app.outbox.compose import forget_templates
from app.outbox.prepare import prepare_batch
from app.outbox.reconcile import (
    fall_back_undelivered_whatsapp,
    reclaim_stale,
    reconcile_unknown,
)
from app.outbox.record import record_batch
from app.outbox.send import send_one, widen_http_pools
from app.outbox.senders import senders_for
from app.outbox.settings import setting
from app.outbox.states import OutboxState as S

log = logging.getLogger(__name__)


@dataclass
class DispatchReport:
    claimed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    reclaimed: int = 0

    def count(self, outcome: str, n: int = 1) -> None:
        if n:
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n

    def as_dict(self) -> dict[str, Any]:
        return {"claimed": self.claimed, "reclaimed": self.reclaimed, **self.outcomes}


def dispatch_due(
    *,
    now: datetime | None = None,
    limit: int | None = None,
    concurrency: int | None = None,
    budget_seconds: float | None = None,
) -> dict[str, Any]:
    """Housekeeping (expiries, escalations, dead workers' rows, unknowns, WhatsApp delivery timeouts), then send
    what is due with ``concurrency`` sends in flight until nothing is due, ``limit`` rows were claimed or the
    budget is spent. ``now`` fixes the business clock (tests); leases always use the real clock."""
    from app.clock import business_clock
    from app.recovery.case_lifecycle import expire_due_cases, run_due_escalations

    clock: Callable[[], datetime] = (lambda: now) if now is not None else business_clock()  # type: ignore[assignment,return-value]
    concurrency = max(1, int(concurrency or setting("DISPATCH_CONCURRENCY")))
    budget = float(budget_seconds if budget_seconds is not None else setting("DISPATCH_BUDGET_SECONDS"))
    report = DispatchReport()
    forget_templates()
    report.count("expired_cases", expire_due_cases(clock()))
    report.count("escalated", run_due_escalations(clock()))
    report.reclaimed = reclaim_stale()
    for outcome, n in reconcile_unknown(clock()).items():
        report.count(outcome, n)
    report.count("whatsapp_timeouts", fall_back_undelivered_whatsapp(clock()))

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    senders = senders_for(app)  # here, once: a sending thread must never need a second connection
    widen_http_pools(senders, concurrency)
    token = new_token()
    db.session.remove()  # this run's batches use short sessions of their own; none holds rows open
    deadline = time.monotonic() + budget
    try:
        with Heartbeat(app, token) as heartbeat, ThreadPoolExecutor(concurrency, thread_name_prefix="dispatch") as pool:
            _run(app, pool, heartbeat, report, clock, token, senders, concurrency, limit, deadline)
    finally:
        for sender in senders.values():
            close = getattr(sender, "close_idle", None)
            if close is not None:
                close()
    return report.as_dict()


def _run(
    app: Flask,
    pool: ThreadPoolExecutor,
    heartbeat: Heartbeat,
    report: DispatchReport,
    clock: Callable[[], datetime],
    token: str,
    senders: dict[str, Any],
    concurrency: int,
    limit: int | None,
    deadline: float,
) -> None:
    """Claim as threads free up (most urgent first: an urgent row waits for at most one send slot, never behind
    a low backlog), prepare each claim as a batch, send on the threads, record what comes back together."""
    in_flight: dict[Future[Attempted], int] = {}
    again: list[int] = []  # rows moved to a fallback channel: still claimed, prepared again
    exhausted = False
    while True:
        ids, again = again, []
        claimed: list[int] = []
        room = concurrency - len(in_flight) - len(ids)
        left = None if limit is None else limit - report.claimed
        if (
            not exhausted
            and room >= max(1, min(concurrency, 16) // 4)
            and (left is None or left > 0)
            and time.monotonic() < deadline
        ):
            wanted = room if left is None else min(room, left)
            claimed = _in_context(app, lambda: claim_due(clock(), wanted, token=token))  # noqa: B023 (called here)
            report.claimed += len(claimed)
            exhausted = not claimed
            heartbeat.hold(claimed)
            ids += claimed
        if ids:
            ready, finished = _prepare(app, ids, clock(), token, senders)
            for mid, outcome in finished.items():
                report.count(outcome)
                heartbeat.release(mid)
            for item in ready:
                in_flight[pool.submit(send_one, app, item, senders)] = item.message_id
        if not in_flight:
            if again or claimed:  # a batch that was only deferred or cancelled: what is due behind it goes on
                continue
            break
        done, waiting = wait(in_flight, timeout=0.5, return_when=FIRST_COMPLETED)
        if done and waiting:  # others are about to finish: one recording transaction for all of them
            done |= wait(waiting, timeout=0.005)[0]
        attempts: list[Attempted] = []
        for future in done:
            mid = in_flight.pop(future)
            try:
                attempts.append(future.result())
            except Exception:  # the row stays in sending: its lease runs out and reconciliation settles it
                log.exception("sending message %s failed unexpectedly", mid)
                report.count("error")
                heartbeat.release(mid)
        for mid, outcome in _record(app, attempts, clock()).items():
            if outcome == "fallback":
                again.append(mid)
            else:
                report.count(outcome)
                heartbeat.release(mid)


def _in_context(app: Flask, work: Callable[[], Any]) -> Any:
    with app.app_context():
        try:
            return work()
        finally:
            db.session.remove()


def _prepare(
    app: Flask, ids: list[int], now: datetime, token: str, senders: dict[str, Any]
) -> tuple[list[Ready], dict[int, str]]:
    """:func:`prepare_batch`; when the batch fails, one message at a time, so one broken message (a template
    that will not render, say) fails alone and the others go."""
    try:
        return _in_context(app, lambda: prepare_batch(ids, now, token=token, senders=senders))  # type: ignore[no-any-return]
    except Exception:
        if len(ids) == 1:
            log.exception("preparing message %s failed", ids[0])
            return [], {ids[0]: _in_context(app, lambda: _fail_prepared(ids[0], token))}
        log.warning("preparing a batch of %d messages failed; one at a time", len(ids), exc_info=True)
    ready: list[Ready] = []
    finished: dict[int, str] = {}
    for mid in ids:
        got, done = _prepare(app, [mid], now, token, senders)
        ready += got
        finished.update(done)
    return ready, finished


def _fail_prepared(message_id: int, token: str | None) -> str:
    message = db.session.get(OutboxMessage, message_id)
    if message is not None and message.state == S.CLAIMED and message.claimed_by == token:
        message.state = S.FAILED
        message.error_text = "internal error while preparing the message"
        add_event(message, "failed", {"error": "internal error"})
        db.session.commit()
    return "error"


def _record(app: Flask, attempts: list[Attempted], now: datetime) -> dict[int, str]:
    """:func:`record_batch`; when the batch fails, one at a time. A result that cannot be recorded leaves its
    row in ``sending``: the lease runs out and reconciliation settles it from the provider's records."""
    if not attempts:
        return {}
    try:
        return _in_context(app, lambda: record_batch(attempts, now))  # type: ignore[no-any-return]
    except Exception:
        if len(attempts) == 1:
            log.exception("recording the result of message %s failed", attempts[0].ready.message_id)
            return {attempts[0].ready.message_id: "error"}
        log.warning("recording %d results failed; one at a time", len(attempts), exc_info=True)
    outcomes: dict[int, str] = {}
    for attempt in attempts:
        outcomes.update(_record(app, [attempt], now))
    return outcomes


def send_now(message_id: int) -> str:
    """One row sent now instead of at the next periodic run (a receipt). It is claimed like any other row, so when a
    run got there first this does nothing (``gone``); the outcome otherwise (``sent``, ``retry``, ...)."""
    from app.clock import business_now

    token = new_token()
    if not claim_one(message_id, token):
        return "gone"
    return send_claimed(message_id, business_now(), token=token)


def send_claimed(
    message_id: int, now: datetime, *, token: str | None = None, senders: dict[str, Any] | None = None
) -> str:
    """One claimed message, start to end (the batch path with a batch of one)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if senders is None:
        senders = senders_for(app)
    while True:
        ready, finished = prepare_batch([message_id], now, token=token, senders=senders)
        if not ready:
            return finished.get(message_id, "gone")
        outcome = record_batch([send_one(app, ready[0], senders)], now)[message_id]
        if outcome != "fallback":
            return outcome
