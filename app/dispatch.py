"""The outbox dispatcher: claim due messages atomically, check they may still go, render, send, record.

States of an outbox row (``rules/`` has no notion of them; this docstring is their specification)::

                       +-------------------- lease expired: nothing was sent ---------------------+
                       v                                                                          |
    scheduled --claim--> claimed --attempt recorded--> sending --(email: checkpoint)--> delivering |
        ^   |                |                            |                                 |      |
        |   |                +--------------------------- | --------------------------------| -----+
        |   +--> cancelled | skipped | merged             v                                 v
        |                                   sent -> delivered -> read | failed | undelivered
        |                                                 |                                 |
        |           (sms/whatsapp: lease expired while    v     (email: lease expired after |
        +--- not at the provider --------------------- unknown    the checkpoint, or lost   |
                                                          |       after the dot)           v
                                                          +-- cannot tell in time ----> review

* **claim** is a conditional UPDATE (``state='scheduled'`` → ``claimed``, with the run's token), after a
  ``SELECT ... FOR UPDATE SKIP LOCKED`` of the candidates on MariaDB, so two workers never claim one row and
  rarely collide. Candidates are taken most urgent first on every claim, and a run claims small batches as its
  threads free up, so ``urgent`` work waits for at most one send slot, never behind a ``low`` backlog.
* **lease**: ``claimed_at`` is the time of the owner's last heartbeat (a thread of each run renews it every
  quarter of ``DISPATCH_LEASE_SECONDS``). A row in ``claimed``/``sending``/``delivering`` whose lease expired
  belongs to a dead (or cut-off) worker and is taken over by :func:`reclaim_stale`. Every step a worker takes on
  a row is conditional on still holding it (row lock + token check), so a worker that lost its lease stops.
* **attempt**: right before the provider is called the row moves to ``sending`` and an ``attempt`` event is
  stored with what reconciliation needs (channel, to, from, the SMS body, the time).
* **check at send time**: a claimed row is sent only if its case is open and not paused (else ``cancelled``, or
  ``paused`` until an operator resumes it: ``app.case_actions``) and the contact rules allow it now; else it is
  ``scheduled`` again for the first allowed moment, with a ``deferred`` event naming each reason and the rule behind
  it. The rules are the planner's (``rules.contact_rules.contact_rules_for``) with the override the row carries
  (``contact_override``: a policy's urgent override, an operator's "send now"), so a late worker never undoes them.

Why a row left by a dead worker is safe to resolve, per channel (:func:`reclaim_stale`, :func:`reconcile_unknown`):

* **email** (SMTP). A server takes a message only when it has read the end-of-data dot; a connection lost before
  it aborts the transaction (RFC 5321 4.1.1.4), and a killed process's sockets are closed by the kernel. The
  sender records a checkpoint (``sending`` → ``delivering``) *before* writing the dot. So: ``sending`` → nothing
  was delivered → ``scheduled`` again. ``delivering`` → the server may have it and SMTP offers no way to ask
  (no message lookup; a success DSN, RFC 3461, is not relayed by most providers) → ``review``: a person decides
  (:func:`resolve_review`). The uncertain window is only the server's end-of-data processing plus one commit.
* **SMS** (Twilio). The Messages API lists what was created: after the lease expired (so any request the dead
  worker had in flight has been processed), ``GET Messages.json?To=&From=`` is searched for our exact body (it
  holds a one-off payment link, so it is unique) since the attempt. Found → ``sent`` with its SID; not found →
  ``scheduled`` again; lookup failing → stays ``unknown`` and is retried on the next pass.
* **WhatsApp** (Cloud API). There is no message lookup, but every status webhook echoes our reference
  (``biz_opaque_callback_data``): any status for the row settles it (``app.delivery.apply_status``), usually
  within seconds. With no status after ``WHATSAPP_RECONCILE_SECONDS``, the row is sent again only when webhooks
  arrived for *other* WhatsApp messages sent after that wait (their delivered/read statuses), i.e. the webhook
  pipe was working, had caught up past ours, and Meta had nothing to say about ours. Residual risk: Meta's retry
  of a webhook that failed to reach us exactly then is later than the wait while others got through; raise the
  wait to shrink it.
* Anything still ``unknown`` after ``UNKNOWN_REVIEW_HOURS`` goes to ``review``. Nothing is ever re-sent blindly.

Each step's channel order is a fallback sequence: a synchronous failure (opted out, invalid address, permanent
provider error) moves on to the next channel at once; an asynchronous one (a failed/undelivered status, or a
WhatsApp message not delivered within ``WHATSAPP_DELIVERY_TIMEOUT_MINUTES``) becomes a new row for the next
channel (:func:`app.delivery.fall_back_later`). Several open cases of one customer due within
``CONSOLIDATE_WINDOW_HOURS`` go as one email or SMS listing the open amounts; the others are ``merged``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app
from sqlalchemy.orm import joinedload

from app.cases import move_cases
from app.channels.base import Channel, OutboundMessage, SendResult
from app.consent import opted_out_channels_of
from app.extensions import db
from app.links import new_payment_link, short_url, tracking_token
from app.merchant import merchant_profile
from app.models import (
    Customer,
    MessageEvent,
    OutboxMessage,
    PaymentLink,
    RecoveryCase,
    Transaction,
)
from app.models.types import utcnow
from app.outbox.states import IN_FLIGHT, ON_THE_WAY, SENT_STATES, OutboxState, check_move, sources
from app.outbox.states import OutboxState as S
from app.senders import data_checkpoint, reference_for, senders_for
from app.templates_service import resolve_template, whatsapp_call
from app.templating import MessageTemplate as TemplateSource
from app.templating import TemplateContext, render

log = logging.getLogger(__name__)

PERSON_CHANNELS = ("email", "sms", "whatsapp")
ADDRESS_FIELD = {"email": "email", "sms": "phone_e164", "whatsapp": "phone_e164"}
OPEN_CASE_STATES = ("open", "contacting", "escalated")
PRIORITY_ORDER = {"urgent": 0, "high": 1, "default": 2, "low": 3}
_OUTBOX = OutboxMessage.__table__
_CLAIMABLE = sources(S.CLAIMED, among={S.SCHEDULED})  # only rows waiting for their time are claimed
RETRY_BACKOFF = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2))
MAX_ATTEMPTS = 6

#: configuration keys read here (``app.config.get``) and their defaults
DEFAULTS: dict[str, float] = {
    "DISPATCH_CONCURRENCY": 32,  # provider calls in flight per worker process
    "DISPATCH_LEASE_SECONDS": 60,  # a claim not renewed for this long belongs to a dead worker
    "DISPATCH_BUDGET_SECONDS": 25,  # one dispatch run stops claiming after this long (the next run goes on)
    "WHATSAPP_RECONCILE_SECONDS": 600,  # wait for a status webhook before re-sending an unknown WhatsApp
    "UNKNOWN_REVIEW_HOURS": 24,  # an unknown row nobody could settle by then goes to a person
    "WHATSAPP_DELIVERY_TIMEOUT_MINUTES": 60,  # sent but not delivered by then: the step falls back
    "CONSOLIDATE_WINDOW_HOURS": 24,  # other open cases' reminders due within this go in one message
}


def setting(name: str) -> float:
    """``app.config[name]``, else the environment variable of that name, else the default above."""
    value = current_app.config.get(name)
    if value in (None, ""):
        value = os.environ.get(name)
    return float(DEFAULTS[name] if value in (None, "") else value)


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


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def new_token() -> str:
    return f"{worker_name()}:{uuid.uuid4().hex[:8]}"[-64:]


# -- the periodic run --------------------------------------------------------------------------------------------
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
    from app.case_lifecycle import expire_due_cases, run_due_escalations
    from app.clock import business_clock

    clock: Callable[[], datetime] = (lambda: now) if now is not None else business_clock()  # type: ignore[assignment,return-value]
    concurrency = max(1, int(concurrency or setting("DISPATCH_CONCURRENCY")))
    budget = float(budget_seconds if budget_seconds is not None else setting("DISPATCH_BUDGET_SECONDS"))
    report = DispatchReport()
    _TEMPLATES.clear()
    report.count("expired_cases", expire_due_cases(clock()))
    report.count("escalated", run_due_escalations(clock()))
    report.reclaimed = reclaim_stale()
    for outcome, n in reconcile_unknown(clock()).items():
        report.count(outcome, n)
    report.count("whatsapp_timeouts", fall_back_undelivered_whatsapp(clock()))

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    senders = senders_for(app)  # here, once: a sending thread must never need a second connection
    _widen_http_pools(senders, concurrency)
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
                in_flight[pool.submit(_send_one, app, item, senders)] = item.message_id
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
        _event(message, "failed", {"error": "internal error"})
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


def _widen_http_pools(senders: dict[str, Any], concurrency: int) -> None:
    """requests keeps 10 connections per host; with more sends in flight the rest would be opened and dropped."""
    import requests
    from requests.adapters import HTTPAdapter

    for sender in senders.values():
        session = getattr(sender, "session", None)
        if isinstance(session, requests.Session) and getattr(session, "_recoup_pool", 0) < concurrency:
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=concurrency)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session._recoup_pool = concurrency  # type: ignore[attr-defined]


def claim_due(now: datetime, limit: int, *, token: str | None = None) -> list[int]:
    """Claim up to ``limit`` due messages, most urgent first, then oldest first. A row is claimed once, whoever
    else is claiming."""
    token = token or new_token()
    if db.engine.dialect.name == "mysql":
        claimed = _lock_due(now, limit)
        changed = db.session.execute(
            sa.update(_OUTBOX).where(_OUTBOX.c.id.in_(claimed), _OUTBOX.c.state.in_(_CLAIMABLE))
            .values(state=S.CLAIMED, claimed_by=token, claimed_at=utcnow())
        ).rowcount if claimed else 0
        db.session.commit()
        if changed == len(claimed):
            return claimed
        log.error("claim: %d of %d locked rows were not scheduled any more", len(claimed) - changed, len(claimed))
        mine = set(db.session.scalars(sa.select(_OUTBOX.c.id).where(_OUTBOX.c.id.in_(claimed),
                                                                     _OUTBOX.c.claimed_by == token)))
        return [c for c in claimed if c in mine]
    # SQLite: one writer at a time, so a conditional update claims; the order is read back
    candidates = _due_candidates(now, limit)
    if not candidates:
        db.session.rollback()
        return []
    db.session.execute(
        sa.update(_OUTBOX).where(_OUTBOX.c.id.in_(candidates), _OUTBOX.c.state.in_(_CLAIMABLE))
        .values(state=S.CLAIMED, claimed_by=token, claimed_at=utcnow())
    )
    db.session.commit()
    priority = sa.case(PRIORITY_ORDER, value=OutboxMessage.priority, else_=2)
    return list(
        db.session.scalars(
            sa.select(OutboxMessage.id)
            .where(OutboxMessage.id.in_(candidates), OutboxMessage.claimed_by == token,
                   OutboxMessage.state == S.CLAIMED)
            .order_by(priority, OutboxMessage.scheduled_for, OutboxMessage.id)
        )
    )


def _due_rows(name: str, now: datetime) -> sa.Select[tuple[int]]:
    """A priority's due rows, oldest first: an index range on ``ix_outbox_claim``."""
    return (
        sa.select(_OUTBOX.c.id)
        .where(_OUTBOX.c.state.in_(_CLAIMABLE), _OUTBOX.c.priority == name, _OUTBOX.c.scheduled_for <= now,
               _OUTBOX.c.channel.in_(PERSON_CHANNELS))
        .order_by(_OUTBOX.c.scheduled_for, _OUTBOX.c.id)
    )


def _lock_due(now: datetime, limit: int) -> list[int]:
    """MariaDB: lock up to ``limit`` due rows that no other claim holds (``SKIP LOCKED``), priority by priority, in
    claim order; usually one statement. Read committed: the range is locked without its gaps, so the planner's
    inserts never wait for a claim."""
    if not db.session().in_transaction():
        db.session.connection(execution_options={"isolation_level": "READ COMMITTED"})
    got: list[int] = []
    for name in PRIORITY_ORDER:
        if len(got) >= limit:
            break
        got += db.session.scalars(_due_rows(name, now).limit(limit - len(got)).with_for_update(skip_locked=True))
    return got


def _due_candidates(now: datetime, limit: int) -> list[int]:
    """Up to ``limit`` due rows' ids, most urgent first, then oldest first: the ``limit`` oldest of each priority,
    merged in one statement."""
    parts = []
    for rank, name in enumerate(PRIORITY_ORDER):
        part = _due_rows(name, now).add_columns(_OUTBOX.c.scheduled_for, sa.literal(rank).label("rank"))
        parts.append(sa.select(*part.limit(limit).subquery().c))
    merged = sa.union_all(*parts).subquery()
    return list(db.session.scalars(
        sa.select(merged.c.id).order_by(merged.c.rank, merged.c.scheduled_for, merged.c.id).limit(limit)
    ))


class Heartbeat:
    """Renews the lease (``claimed_at``) of every row a run holds, on a thread of its own (by primary key: a scan
    would lock rows other workers are claiming)."""

    def __init__(self, app: Flask, token: str) -> None:
        self.app, self.token = app, token
        self.every = max(0.2, setting("DISPATCH_LEASE_SECONDS") / 4)
        self._held: set[int] = set()
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dispatch-heartbeat", daemon=True)

    def hold(self, ids: list[int]) -> None:
        with self._guard:
            self._held.update(ids)

    def release(self, message_id: int) -> None:
        with self._guard:
            self._held.discard(message_id)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            with self._guard:
                held = sorted(self._held)
            if not held:
                continue
            with self.app.app_context():
                try:
                    for start in range(0, len(held), 500):
                        db.session.execute(
                            sa.update(OutboxMessage)
                            .where(OutboxMessage.id.in_(held[start:start + 500]),
                                   OutboxMessage.claimed_by == self.token, OutboxMessage.state.in_(IN_FLIGHT))
                            .values(claimed_at=utcnow())
                            .execution_options(synchronize_session=False)
                        )
                        db.session.commit()
                except sa.exc.OperationalError as exc:  # a deadlock or a lost connection: the next beat renews
                    log.warning("dispatch heartbeat missed a beat: %s", exc.orig)
                    db.session.rollback()
                except Exception:
                    log.exception("dispatch heartbeat failed")
                    db.session.rollback()
                finally:
                    db.session.remove()


# -- dead workers' rows and unknown outcomes ----------------------------------------------------------------------
def reclaim_stale(now: datetime | None = None) -> int:
    """Rows whose owner's lease expired: back to the queue when nothing can have been sent, else ``unknown``
    (SMS, WhatsApp: the provider is asked) or ``review`` (an email past its checkpoint)."""
    cutoff = utcnow() - timedelta(seconds=setting("DISPATCH_LEASE_SECONDS"))
    rows = db.session.execute(
        sa.select(OutboxMessage.id, OutboxMessage.state, OutboxMessage.channel, OutboxMessage.claimed_by)
        .where(OutboxMessage.state.in_(IN_FLIGHT), OutboxMessage.claimed_at < cutoff)
        .limit(5000)
    ).all()
    moved = 0
    for mid, state, channel, owner in rows:
        if channel not in PERSON_CHANNELS:
            if channel != "escalation":
                continue
            # creating the task is idempotent; at worst the team gets its notification twice
            target, why = S.SCHEDULED, "the worker stopped while escalating"
        elif state == S.CLAIMED:
            target, why = S.SCHEDULED, "the worker stopped before sending; nothing was sent"
        elif state == S.DELIVERING:
            target, why = S.REVIEW, "the worker stopped after the end of DATA went out: the mail server may have it"
        elif channel == "email":
            target, why = S.SCHEDULED, "the worker stopped before the end of DATA: the mail server dropped it"
        else:
            target, why = S.UNKNOWN, "the worker stopped while sending; asking the provider before anything else"
        check_move(mid, state, target)
        changed = db.session.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.id == mid, OutboxMessage.state == state, OutboxMessage.claimed_by == owner,
                   OutboxMessage.claimed_at < cutoff)
            .values(state=target, claimed_by=None if target == S.SCHEDULED else owner)
            .execution_options(synchronize_session=False)
        ).rowcount
        if changed:
            kind = {S.SCHEDULED: "reclaimed", S.UNKNOWN: "unknown", S.REVIEW: "review"}[target]
            _event_for(mid, kind, {"why": why, "was": state, "worker": owner})
            moved += 1
    db.session.commit()
    return moved


def reconcile_unknown(now: datetime | None = None, *, limit: int = 500) -> dict[str, int]:
    """Settle ``unknown`` rows from the providers' own records; see the module docstring for each channel."""
    real_now = utcnow()
    cutoff = real_now - timedelta(seconds=setting("DISPATCH_LEASE_SECONDS"))
    review_after = timedelta(hours=setting("UNKNOWN_REVIEW_HOURS"))
    wa_wait = timedelta(seconds=setting("WHATSAPP_RECONCILE_SECONDS"))
    rows = db.session.scalars(
        sa.select(OutboxMessage)
        .where(OutboxMessage.state == S.UNKNOWN, OutboxMessage.channel.in_(PERSON_CHANNELS),
               sa.or_(OutboxMessage.claimed_at.is_(None), OutboxMessage.claimed_at < cutoff))
        .order_by(OutboxMessage.id)
        .limit(limit)
    ).all()
    counts: dict[str, int] = {}
    senders = senders_for(current_app._get_current_object()) if rows else {}  # type: ignore[attr-defined]
    for row in rows:
        attempt = last_attempt(row.id)
        started = _parse_time(attempt.get("started_at")) or row.updated_at or real_now
        outcome = "unresolved"
        if row.channel == "email":
            outcome = _settle(row, S.REVIEW, "review", {"why": "an email's outcome cannot be looked up over SMTP"})
        elif row.channel == "sms" and "sms" in senders and attempt.get("body"):
            try:
                found = senders["sms"].find_message(  # type: ignore[attr-defined]
                    attempt["to"], attempt["body"], since=started, from_=attempt.get("from")
                )
            except Exception as exc:  # the lookup failing settles nothing; the next pass asks again
                log.warning("Twilio lookup for message %s failed: %s", row.id, exc)
            else:
                if found is not None:
                    outcome = _settle(row, S.SENT, "reconciled", {"found": True, "sid": found.get("sid")},
                                      provider_message_id=str(found.get("sid")), sent_at=real_now)
                else:
                    outcome = _settle(row, S.SCHEDULED, "reconciled",
                                      {"found": False, "why": "Twilio has no such message: sending again"},
                                      claimed_by=None)
        elif row.channel == "whatsapp" and real_now - started >= wa_wait and _whatsapp_webhooks_after(
            started + wa_wait, row.id
        ):
            outcome = _settle(row, S.SCHEDULED, "reconciled",
                              {"found": False, "why": "no status webhook while later ones arrived: sending again"},
                              claimed_by=None)
        if outcome == "unresolved" and real_now - started >= review_after:
            outcome = _settle(row, S.REVIEW, "review", {"why": "the provider could not tell us in time"})
        counts[outcome] = counts.get(outcome, 0) + 1
        db.session.commit()
    return {f"reconcile_{k}": v for k, v in counts.items() if k != "unresolved"}


def _settle(row: OutboxMessage, state: OutboxState, kind: str, payload: dict[str, Any], **values: Any) -> str:
    changed = db.session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id == row.id, OutboxMessage.state.in_(sources(state, among={S.UNKNOWN})))
        .values(state=state, **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not changed:
        return "unresolved"
    _event_for(row.id, kind, payload)
    return {S.SCHEDULED: "resend", S.SENT: "found"}.get(state, state.value)


def _whatsapp_webhooks_after(after: datetime, except_id: int) -> bool:
    """Have delivery webhooks reached us for other WhatsApp messages *sent* after ``after``? Then the webhook pipe
    was working and had caught up past ours. (Statuses arriving late for messages older than that prove nothing: a
    lagging pipe delivers them while ours is still on its way.)"""
    return (
        db.session.scalar(
            sa.select(MessageEvent.id)
            .join(OutboxMessage, OutboxMessage.id == MessageEvent.message_id)
            .where(OutboxMessage.channel == "whatsapp", OutboxMessage.id != except_id,
                   OutboxMessage.sent_at > after,
                   MessageEvent.kind.in_(("delivered", "read")), MessageEvent.recorded_at > after)
            .limit(1)
        )
        is not None
    )


def last_attempt(message_id: int) -> dict[str, Any]:
    event = db.session.scalar(
        sa.select(MessageEvent)
        .where(MessageEvent.message_id == message_id, MessageEvent.kind == "attempt")
        .order_by(MessageEvent.id.desc())
        .limit(1)
    )
    return dict(event.provider_payload or {}) if event is not None else {}


def resolve_review(message_id: int, *, delivered: bool, actor: str = "operator") -> bool:
    """A person settles a ``review`` row: it was delivered (``sent``), or it was not (sent again)."""
    state = S.SENT if delivered else S.SCHEDULED
    values: dict[str, Any] = {"state": state, "claimed_by": None}
    if delivered:
        values["sent_at"] = utcnow()
    changed = db.session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.state.in_(sources(state, among={S.REVIEW})))
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed:
        _event_for(message_id, "reviewed", {"delivered": delivered, "by": actor})
    db.session.commit()
    return bool(changed)


def fall_back_undelivered_whatsapp(now: datetime) -> int:
    """WhatsApp messages sent but not delivered within the timeout: their step moves on to its next channel."""
    from app.delivery import fall_back_later, fallback_key

    timeout = timedelta(minutes=setting("WHATSAPP_DELIVERY_TIMEOUT_MINUTES"))
    rows = db.session.scalars(
        sa.select(OutboxMessage)
        .where(OutboxMessage.channel == "whatsapp", OutboxMessage.state == S.SENT,
               OutboxMessage.sent_at <= now - timeout, OutboxMessage.sent_at > now - timeout - timedelta(days=2),
               OutboxMessage.case_id.is_not(None))
        .limit(500)
    ).all()
    rows = [r for r in rows if r.fallbacks]
    if not rows:
        return 0
    keys = {fallback_key(r): r for r in rows}
    done = set(db.session.scalars(sa.select(OutboxMessage.idempotency_key)
                                  .where(OutboxMessage.idempotency_key.in_(list(keys)))))
    moved = 0
    for key, row in keys.items():
        if key in done:
            continue
        if fall_back_later(row, why=f"not delivered within {timeout}", at=now):
            _event(row, "not_delivered", {"after_minutes": timeout.total_seconds() / 60, "to": row.fallbacks[0]})
            moved += 1
    db.session.commit()
    return moved


# -- a batch of messages ------------------------------------------------------------------------------------------
# A run works in batches: the claimed rows are checked, rendered and moved to ``sending`` in one transaction
# (:func:`prepare_batch`), sending threads only talk to the providers (:func:`_send_one`), and the results that
# come back together are recorded in one transaction (:func:`record_batch`). Per message that is a few statements
# inside shared transactions instead of a dozen round trips and three commits of its own; the states, and what a
# crash leaves behind, are the same as for one message at a time.


@dataclass(frozen=True)
class Ready:
    """A message checked, rendered and recorded as ``sending``: all a sending thread needs."""

    message_id: int
    owner: str | None
    case_id: int | None
    channel: str
    outbound: OutboundMessage


@dataclass(frozen=True)
class Attempted:
    """What came back from the provider for a :class:`Ready` message (``result`` None: nothing to record)."""

    ready: Ready
    result: SendResult | None
    outcome: str | None = None


class _BatchFacts:
    """What the checks of one batch share, read once: merchant contact windows, policy versions, histories."""

    def __init__(self, now: datetime, customer_ids: set[int]) -> None:
        self.now = now
        self.started = utcnow()  # the attempts' start (real clock, like the leases)
        self.customer_ids = customer_ids
        self._windows: dict[str, Any] | None = None
        self._versions: dict[int, Any] = {}
        self._histories: dict[int, Any] | None = None

    def windows(self) -> dict[str, Any]:
        if self._windows is None:
            from app.planning import contact_windows

            self._windows = contact_windows()  # the merchant's settings under the policy's own statements
        return self._windows

    def policy(self, version_id: int) -> Any:
        if version_id not in self._versions:
            from app.models import PolicyVersion
            from app.policies import compiled

            version = db.session.get(PolicyVersion, version_id)
            self._versions[version_id] = compiled(version) if version is not None else None
        return self._versions[version_id]

    def history(self, customer_id: int) -> Any:
        if self._histories is None:
            self._histories = _contact_histories(self.customer_ids, self.now)
        from rules.timing import ContactHistory

        return self._histories.get(customer_id) or ContactHistory(sent=())

    def record_send(self, customer_id: int | None, channel: str) -> None:
        """A message of this batch is going out now: the next ones of the same customer count it against the
        cadence caps (steps that fell due together go one at a time, as the caps allow)."""
        if customer_id is None or channel not in PERSON_CHANNELS:
            return
        from rules.timing import ContactHistory
        from rules.timing.types import SentRecord

        before = self.history(customer_id)
        assert self._histories is not None
        self._histories[customer_id] = ContactHistory(sent=(*before.sent, SentRecord(at=self.now, channel=channel)))


def prepare_batch(
    ids: list[int], now: datetime, *, token: str | None, senders: dict[str, Any]
) -> tuple[list[Ready], dict[int, str]]:
    """Check, render and move to ``sending`` the claimed rows ``ids`` (in that order), in one transaction.
    Returns the messages ready to send and the outcome of the others (cancelled, skipped, deferred, gone)."""
    with _rows_written_together() as rows:
        return _prepare_rows(ids, now, token, senders, rows)


def _prepare_rows(
    ids: list[int], now: datetime, token: str | None, senders: dict[str, Any], rows_added: _BatchRows
) -> tuple[list[Ready], dict[int, str]]:
    finished: dict[int, str] = {}
    ready: list[Ready] = []
    rows = {
        m.id: m
        for m in db.session.scalars(
            sa.select(OutboxMessage).where(OutboxMessage.id.in_(ids)).order_by(OutboxMessage.id)
            .with_for_update().execution_options(populate_existing=True)
        )
    }
    mine: list[OutboxMessage] = []
    for mid in ids:
        message = rows.get(mid)
        if message is None or message.state != S.CLAIMED or (token is not None and message.claimed_by != token):
            finished[mid] = "gone"
        else:
            mine.append(message)
    if not mine:
        db.session.rollback()
        return ready, finished
    case_ids = {m.case_id for m in mine if m.case_id is not None}
    cases = {
        c.id: c
        for c in db.session.scalars(
            sa.select(RecoveryCase)
            .where(RecoveryCase.id.in_(case_ids))
            .options(joinedload(RecoveryCase.transaction).defer(Transaction.raw))  # the gateway's record: not needed
        )
    } if case_ids else {}
    customer_ids = {m.customer_id for m in mine if m.customer_id is not None}
    customers = {
        c.id: c for c in db.session.scalars(sa.select(Customer).where(Customer.id.in_(customer_ids)))
    } if customer_ids else {}
    blocked = opted_out_channels_of(customer_ids)
    facts = _BatchFacts(now, customer_ids)
    with_siblings = _customers_with_siblings(mine, now)
    pending = {m.id: m for m in mine if m.customer_id in with_siblings}  # not yet prepared: may be merged
    for message in mine:
        if message.state == S.MERGED:  # into a message of this batch prepared before it
            finished[message.id] = "merged"
            continue
        pending.pop(message.id, None)
        case = cases.get(message.case_id) if message.case_id is not None else None
        customer = customers.get(message.customer_id) if message.customer_id is not None else None
        outcome = _prepare_one(message, case, customer, blocked.get(message.customer_id or 0, set()), senders,
                               facts, with_siblings, pending)
        if isinstance(outcome, Ready):
            ready.append(outcome)
            facts.record_send(message.customer_id, outcome.channel)
        else:
            finished[message.id] = outcome
    if ready:  # one statement, not an UPDATE per row (each is a round trip the whole run waits for)
        db.session.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.id.in_([r.message_id for r in ready]),
                   OutboxMessage.state.in_(sources(S.SENDING, among={S.CLAIMED})))
            .values(state=S.SENDING, attempts=OutboxMessage.attempts + 1, claimed_at=facts.started)
            .execution_options(synchronize_session=False)
        )
    rows_added.write()
    db.session.commit()
    return ready, finished


def _prepare_one(
    message: OutboxMessage,
    case: RecoveryCase | None,
    customer: Customer | None,
    blocked: set[str],
    senders: dict[str, Any],
    facts: _BatchFacts,
    with_siblings: set[int],
    pending: dict[int, OutboxMessage],
) -> Ready | str:
    now = facts.now
    if case is not None and case.state not in OPEN_CASE_STATES:
        message.state = S.CANCELLED
        _event(message, "cancelled", {"why": f"case is {case.state}"})
        return "cancelled"
    if case is not None and case.paused_at is not None:  # claimed just before the pause: held with the others
        message.state, message.claimed_by = S.PAUSED, None
        _event(message, "paused", {"why": f"case paused by {case.paused_by or '?'}"})
        return "paused"
    channel = _next_usable_channel(message, customer, senders, blocked)
    if channel is None:
        message.state = S.SKIPPED
        _event(message, "skipped", {"why": message.error_text or "no channel left"})
        return "skipped"
    deferred = _deferred_until(message, customer, channel, facts)
    if deferred is not None:
        message.state = S.SCHEDULED
        message.claimed_by = None
        message.scheduled_for = deferred.until
        message.deferred_by = list(deferred.reasons)
        _event(message, "deferred", deferred.event(channel, message.contact_override))
        return "deferred"
    merged: list[MergedCase] = []
    if message.customer_id in with_siblings or message.attempts:  # a retry lists what its first attempt carried
        merged = _merge_siblings(message, case, channel, now, pending)
    outbound = _compose(message, case, customer, channel, merged)
    # state, attempts and lease are set for the whole batch in one statement (prepare_batch)
    attempt: dict[str, Any] = {"channel": channel, "to": outbound.to, "n": message.attempts + 1,
                               "started_at": facts.started.isoformat(), "by": message.claimed_by}
    if message.contact_override:  # what the contact rules lifted for this send, and who said so
        attempt["override"] = message.contact_override
    if channel == "sms":
        attempt["body"] = outbound.text
        attempt["from"] = getattr(senders[channel], "from_number", None)
    _event(message, "attempt", attempt)
    return Ready(message.id, message.claimed_by, case.id if case is not None else None, channel, outbound)


def _send_one(app: Flask, ready: Ready, senders: dict[str, Any]) -> Attempted:
    """The provider call (a sending thread). An email writes its checkpoint right before the final dot."""
    if ready.channel != "email":
        return Attempted(ready, senders[ready.channel].send(ready.outbound))
    mid, owner = ready.message_id, ready.owner
    with app.app_context():
        try:
            with data_checkpoint(lambda: _checkpoint(mid, owner), lambda code: _delivered(mid, owner, code)) as point:
                result = senders["email"].send(ready.outbound)
        finally:
            db.session.remove()
    if point.vetoed:
        return Attempted(ready, None, "lost")
    if result.unknown and not point.reached_dot:
        # the connection went before the dot: the server dropped the message; nothing was delivered
        result = replace(result, unknown=False, retryable=True, error_code="connection_lost_before_dot")
    return Attempted(ready, result)


def record_batch(attempts: list[Attempted], now: datetime) -> dict[int, str]:
    """Record what the providers answered, in one transaction. ``fallback``: the row was moved to its next
    channel and is still claimed (prepare it again)."""
    with _rows_written_together() as rows:
        return _record_rows(attempts, now, rows)


def _record_rows(attempts: list[Attempted], now: datetime, rows_added: _BatchRows) -> dict[int, str]:
    outcomes = {a.ready.message_id: a.outcome for a in attempts if a.result is None}
    todo = [a for a in attempts if a.result is not None]
    if not todo:
        return outcomes  # type: ignore[return-value]
    sent = [a for a in todo if a.result.accepted]  # type: ignore[union-attr]
    failed = sorted((a for a in todo if not a.result.accepted), key=lambda a: a.ready.message_id)  # type: ignore[union-attr]
    rows = {
        m.id: m
        for m in db.session.scalars(
            sa.select(OutboxMessage).where(OutboxMessage.id.in_([a.ready.message_id for a in failed]))
            .order_by(OutboxMessage.id).with_for_update().execution_options(populate_existing=True)
        )
    } if failed else {}
    for a in failed:
        message = rows.get(a.ready.message_id)
        outcomes[a.ready.message_id] = (
            "gone" if message is None else _record_failure(message, a.ready, a.result, now)  # type: ignore[arg-type]
        )
    outcomes.update({a.ready.message_id: "sent" for a in sent})
    _record_sent(sent)
    rows_added.write()
    db.session.commit()
    return outcomes  # type: ignore[return-value]


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
        outcome = record_batch([_send_one(app, ready[0], senders)], now)[message_id]
        if outcome != "fallback":
            return outcome


def _held_by(state: OutboxState, target: OutboxState) -> sa.ColumnElement[bool]:
    """Still ours, in ``state`` (which must be allowed to move to ``target``)."""
    return sa.and_(_OUTBOX.c.id == sa.bindparam("mid"), _OUTBOX.c.state.in_(sources(target, among={state})),
                   _OUTBOX.c.claimed_by.is_not_distinct_from(sa.bindparam("owner")))


# built once: these run for every email, from the sending threads, each on a pooled connection of its own
_TO_DELIVERING = sa.update(_OUTBOX).where(_held_by(S.SENDING, S.DELIVERING)).values(state=S.DELIVERING)
_DELIVERED = sa.update(_OUTBOX).where(_held_by(S.DELIVERING, S.SENT)).values(state=S.SENT,
                                                                            sent_at=sa.bindparam("sent_at"))
_REFUSED = sa.update(_OUTBOX).where(_held_by(S.DELIVERING, S.SENDING)).values(state=S.SENDING)


_mark_engines: dict[sa.Engine, sa.Engine] = {}
_mark_engines_guard = threading.Lock()


def _marks() -> sa.Engine:
    """Where the sending threads write an email's checkpoint and delivery marks. MariaDB: an engine of its own,
    of kept autocommit connections, used without a ping before and a rollback after, so that a mark is one round
    trip instead of four. A connection the server dropped fails its mark (the email is then not sent, or goes to
    review, as after a crash) and is replaced. SQLite: the app's engine."""
    engine = db.engine
    if engine.dialect.name != "mysql":
        return engine
    with _mark_engines_guard:
        marks = _mark_engines.get(engine)
        if marks is None:
            options = current_app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {}
            marks = _mark_engines[engine] = sa.create_engine(
                engine.url, isolation_level="AUTOCOMMIT", skip_autocommit_rollback=True, pool_pre_ping=False,
                pool_reset_on_return=None, pool_recycle=1800, pool_size=options.get("pool_size", 20),
                max_overflow=options.get("max_overflow", 20),
            )
    return marks


def _mark(statement: sa.Update, params: dict[str, Any]) -> int:
    engine = _marks()
    if engine is db.engine:
        with engine.begin() as conn:
            return conn.execute(statement, params).rowcount
    with engine.connect() as conn:
        return conn.execute(statement, params).rowcount


def _checkpoint(message_id: int, owner: str | None) -> bool:
    """Right before an email's final dot: still ours? then record (committed) that the server may now have it."""
    return bool(_mark(_TO_DELIVERING, {"mid": message_id, "owner": owner}))


def _delivered(message_id: int, owner: str | None, code: int) -> None:
    """The server answered the dot: record it at once (before QUIT and the bookkeeping). 250: it has the message,
    which keeps the window where a crash leaves an email for review as short as one commit. Anything else: it
    refused the message, so nothing was delivered: back to ``sending`` (a retry passes the checkpoint again)."""
    if code == 250:
        _mark(_DELIVERED, {"mid": message_id, "owner": owner, "sent_at": utcnow()})
    else:
        _mark(_REFUSED, {"mid": message_id, "owner": owner})


def _next_usable_channel(
    message: OutboxMessage, customer: Customer | None, senders: dict[str, Any], blocked: set[str]
) -> str | None:
    """The message's channel if it can be used, else the first usable fallback (the row moves to it)."""
    order = [message.channel, *(message.fallbacks or [])]
    for index, channel in enumerate(order):
        why = None
        if channel in blocked:
            why = "opted out"
        elif channel not in senders:
            why = "channel not configured"
        elif customer is None or not getattr(customer, ADDRESS_FIELD[channel], None):
            why = f"no {channel} address"
        if why is None:
            if index:
                message.channel, message.fallbacks = channel, order[index + 1 :]
            message.address = getattr(customer, ADDRESS_FIELD[channel])
            return channel
        _event(message, "fallback" if index + 1 < len(order) else "skipped", {"channel": channel, "why": why})
        message.error_text = f"{channel}: {why}"
    return None


def _contact_histories(customer_ids: set[int], now: datetime) -> dict[int, Any]:
    """What each customer got in the last week, on every channel: cadence caps hold across channels at send
    time. Messages on their way (``sending``, ``delivering``: another batch or worker has them) count as sent now.
    One query for a batch."""
    from rules.timing import ContactHistory
    from rules.timing.types import SentRecord

    sent: dict[int, list[SentRecord]] = {}
    if customer_ids:
        rows = db.session.execute(
            sa.select(OutboxMessage.customer_id, OutboxMessage.sent_at, OutboxMessage.channel).where(
                OutboxMessage.customer_id.in_(customer_ids),
                OutboxMessage.channel.in_(PERSON_CHANNELS),
                sa.or_(
                    sa.and_(OutboxMessage.sent_at.is_not(None), OutboxMessage.sent_at > now - timedelta(days=8)),
                    OutboxMessage.state.in_(ON_THE_WAY),
                ),
            )
        ).all()
        for customer_id, at, channel in rows:
            sent.setdefault(customer_id, []).append(SentRecord(at=at or now, channel=channel))
    return {cid: ContactHistory(sent=tuple(records)) for cid, records in sent.items()}


@dataclass(frozen=True)
class Deferral:
    """A message that may not go yet: when it may, what held it back and where each rule came from."""

    until: datetime
    reasons: tuple[str, ...]
    held_by: tuple[dict[str, Any], ...]

    def event(self, channel: str, override: dict[str, Any] | None) -> dict[str, Any]:
        payload: dict[str, Any] = {"until": self.until.isoformat(), "channel": channel,
                                   "reasons": list(self.reasons), "held_by": list(self.held_by)}
        if override:
            payload["override"] = override
        return payload


def _deferred_until(
    message: OutboxMessage, customer: Customer | None, channel: str, facts: _BatchFacts
) -> Deferral | None:
    """Check the contact rules and cadence caps again at send time: a late worker must not send into quiet hours,
    nor past a cap that messages on other channels used up meanwhile. The rules are the planner's own
    (``rules.contact_rules.contact_rules_for``) with the override the row carries, so what the plan allowed (a
    policy's urgent override, an operator's "send now") is not undone here."""
    from app.planning import customer_zones
    from rules.contact_rules import Override, contact_rules_for, held_by
    from rules.timing import next_send_time

    if customer is None or message.policy_version_id is None:
        return None
    policy = facts.policy(message.policy_version_id)
    if policy is None:
        return None
    zones = customer_zones(customer)
    if not zones:
        return None
    now, windows, timing = facts.now, facts.windows(), policy.timing
    country, region = customer.country, customer.region
    rules = contact_rules_for(timing, windows, Override.from_dict(message.contact_override), country=country,
                              region=region)
    scheduled = next_send_time(now, zones, channel, rules, country=country, region=region,
                               history=facts.history(customer.id))
    if scheduled.send_at is not None and scheduled.send_at <= now + timedelta(seconds=60):
        return None
    until = scheduled.send_at or now + timedelta(days=1)
    sources = held_by(scheduled.reasons, timing, windows, country=country, region=region, channel=channel)
    return Deferral(until, tuple(scheduled.reasons), tuple(h.as_dict() for h in sources))


# -- consolidation ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MergedCase:
    case_id: int
    message_id: int
    amount: str
    pay_url: str


def _customers_with_siblings(messages: list[OutboxMessage], now: datetime) -> set[int]:
    """The customers of ``messages`` (email or SMS) who have another open case's reminder due within the
    consolidation window: only their messages need :func:`_merge_siblings`. One query for a batch."""
    window = timedelta(hours=setting("CONSOLIDATE_WINDOW_HOURS"))
    customer_ids = {m.customer_id for m in messages if m.customer_id is not None and m.case_id is not None}
    if window <= timedelta(0) or not customer_ids:
        return set()
    ours = [m.id for m in messages]
    rows = db.session.execute(
        sa.select(OutboxMessage.customer_id, OutboxMessage.case_id)
        .join(RecoveryCase, RecoveryCase.id == OutboxMessage.case_id)
        .where(OutboxMessage.customer_id.in_(customer_ids), OutboxMessage.state == S.SCHEDULED,
               OutboxMessage.id.not_in(ours), OutboxMessage.scheduled_for <= now + window,
               OutboxMessage.channel.in_(PERSON_CHANNELS), RecoveryCase.state.in_(OPEN_CASE_STATES))
    ).all()
    cases_of: dict[int, set[int]] = {}
    for m in messages:
        if m.customer_id is not None and m.case_id is not None:
            cases_of.setdefault(m.customer_id, set()).add(m.case_id)
    # another case's row: the message's own case may have several rows scheduled (later steps), which is not it;
    # and customers with several cases' rows in this batch (due together, claimed together)
    return {cid for cid, case_id in rows if case_id not in cases_of.get(cid, set()) or len(cases_of[cid]) > 1} | {
        cid for cid, ids in cases_of.items() if len(ids) > 1
    }


def _merge_siblings(
    message: OutboxMessage,
    case: RecoveryCase | None,
    channel: str,
    now: datetime,
    batch: dict[int, OutboxMessage] | None = None,
) -> list[MergedCase]:
    """Other open cases of this customer with a reminder due within the window ride along in this email or SMS
    (a WhatsApp template cannot list them); their rows become ``merged``: rows still scheduled, and rows claimed
    in this same batch and not yet prepared (``batch``; due together, claimed together). Returns every case this
    message carries, including those merged on an earlier attempt (a retry lists them again)."""
    if channel not in ("email", "sms") or case is None or message.customer_id is None:
        return []
    window = timedelta(hours=setting("CONSOLIDATE_WINDOW_HOURS"))
    if window <= timedelta(0):
        return []
    carried: dict[int, int] = {}  # case id -> the merged row
    for event in db.session.scalars(
        sa.select(MessageEvent).where(MessageEvent.message_id == message.id, MessageEvent.kind == "consolidated")
    ):
        payload = event.provider_payload or {}
        carried.update(zip(payload.get("cases") or [], payload.get("messages") or [], strict=False))
    fresh: dict[int, int] = {}
    rows = db.session.execute(
        sa.select(OutboxMessage.id, OutboxMessage.case_id)
        .join(RecoveryCase, RecoveryCase.id == OutboxMessage.case_id)
        .where(OutboxMessage.customer_id == message.customer_id, OutboxMessage.state == S.SCHEDULED,
               OutboxMessage.case_id != case.id, OutboxMessage.scheduled_for <= now + window,
               OutboxMessage.channel.in_(PERSON_CHANNELS), RecoveryCase.state.in_(OPEN_CASE_STATES))
        .order_by(OutboxMessage.scheduled_for, OutboxMessage.id)
    ).all()
    for other in list((batch or {}).values()):
        if other.customer_id != message.customer_id or other.case_id in (None, case.id) or other is message:
            continue
        other_case = db.session.get(RecoveryCase, other.case_id)
        if other_case is None or other_case.state not in OPEN_CASE_STATES or other_case.paused_at is not None:
            continue
        other.state, other.claimed_by = S.MERGED, None
        _event(other, "merged", {"into": message.id, "channel": channel})
        del batch[other.id]  # type: ignore[index]
        if other.case_id not in carried:
            fresh.setdefault(other.case_id, other.id)  # type: ignore[arg-type]
    for other_id, other_case_id in rows:
        changed = db.session.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.id == other_id, OutboxMessage.state.in_(sources(S.MERGED, among={S.SCHEDULED})))
            .values(state=S.MERGED)
            .execution_options(synchronize_session=False)
        ).rowcount
        if changed:
            _event_for(other_id, "merged", {"into": message.id, "channel": channel})
            if other_case_id not in carried:
                fresh.setdefault(other_case_id, other_id)
    if fresh:
        _event(message, "consolidated", {"cases": list(fresh), "messages": list(fresh.values())})
    from app.money import format_minor

    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    merged: list[MergedCase] = []
    for case_id, row_id in {**carried, **fresh}.items():
        other = db.session.get(RecoveryCase, case_id)
        if other is None or other.state not in OPEN_CASE_STATES:
            continue  # paid (or closed) since: nothing to list
        token = _payment_link(other, current_app.config["SECRET_KEY"], message.id)
        amount = format_minor(other.amount_due_minor, other.currency, message.locale or "en_US")
        merged.append(MergedCase(case_id, row_id, amount, f"{base}/pay/{token}"))
    return merged


#: the block a consolidated reminder adds, in the customer's language (heading, link text)
_OTHER_OPEN_PAYMENTS = {"en": ("You also have other open payments:", "pay"),
                        "es": ("También tiene otros pagos pendientes:", "pagar")}


def _with_merged(
    text: str | None, html: str | None, merged: list[MergedCase], locale: str | None
) -> tuple[str | None, str | None]:
    if not merged:
        return text, html
    from app.default_templates import language_of

    heading, pay = _OTHER_OPEN_PAYMENTS.get(language_of(locale), _OTHER_OPEN_PAYMENTS["en"])
    lines = "\n".join(f"- {m.amount}: {m.pay_url}" for m in merged)
    text = f"{text or ''}\n\n{heading}\n{lines}"
    if html:
        from markupsafe import escape

        items = "".join(f'<li>{escape(m.amount)}: <a href="{escape(m.pay_url)}">{pay}</a></li>' for m in merged)
        block = f"<p>{escape(heading)}</p><ul>{items}</ul>"
        html = html.replace("</body>", block + "</body>") if "</body>" in html else html + block
    return text, html


# -- composing ----------------------------------------------------------------------------------------------------
#: template sources read during the current dispatch run (cleared when a run starts: a run sends thousands)
_TEMPLATES: dict[tuple[Any, ...], TemplateSource] = {}


def _template_source(name: str | None, channel: str, locale: str | None) -> TemplateSource:
    key = (str(db.engine.url), name, channel, locale)
    source = _TEMPLATES.get(key)
    if source is None:
        source = _TEMPLATES[key] = _load_template_source(name, channel, locale)
    return source


def _load_template_source(name: str | None, channel: str, locale: str | None) -> TemplateSource:
    return resolve_template(name, channel, locale)  # the merchant's own, else the built-in, in the customer's language


def _compose(
    message: OutboxMessage,
    case: RecoveryCase | None,
    customer: Customer | None,
    channel: str,
    merged: list[MergedCase] | None = None,
) -> OutboundMessage:
    config = current_app.config
    base = config["PUBLIC_BASE_URL"].rstrip("/")
    pay_url = base
    transaction: dict[str, Any] = {}
    offers: list[str] = []
    if case is not None:
        token = _payment_link(case, config["SECRET_KEY"], message.id)
        pay_url = f"{base}/pay/{token}"
        if channel in ("sms", "whatsapp"):
            pay_url = short_url(base, token, config["SECRET_KEY"])  # one SMS segment, not two
        tx = case.transaction
        transaction = {
            "id": tx.gateway_transaction_id,
            "amount_minor": case.amount_due_minor,
            "currency": case.currency,
            "failed_at": tx.failed_at,
            "product_type": tx.product_type,
            "decline_reason": tx.decline_reason,
            "description": tx.order_description,
        }
        offers = list((case.plan or {}).get("offers") or [])
    who = {}
    if customer is not None:
        who = {
            "id": customer.id,
            "first_name": customer.first_name,
            "last_name": customer.last_name,
            "email": customer.email,
            "phone": customer.phone_e164,
            "locale": customer.locale,
            "country": customer.country,
        }
    unsubscribe = f"{base}/t/u/{tracking_token(config['SECRET_KEY'], message.id)}"
    context = TemplateContext(
        customer=who,
        transaction=transaction,
        payment_link=pay_url,
        merchant=merchant_profile().template_fields(),
        offers=offers,
        unsubscribe_link=unsubscribe,
        timezone=customer.timezone if customer else None,
    )
    source = _template_source(message.template, channel, message.locale)
    rendered = render(channel, source, context, locale=message.locale)
    text, html = _with_merged(rendered.text, rendered.html, merged or [], message.locale)
    reference = reference_for(message.id)
    if channel == "whatsapp":
        language, params = whatsapp_call(source, context, message.locale)  # the approved body's parameters
        return OutboundMessage(
            channel=Channel.WHATSAPP,
            to=message.address or "",
            reference=reference,
            text=rendered.text,
            template_name=message.template or "payment_failed",
            template_language=language,
            template_params=params,
        )
    if channel == "sms":
        from app.channels.sms import with_reference

        callback = with_reference(f"{base}/hooks/twilio/status", reference)
        return OutboundMessage(
            channel=Channel.SMS,
            to=message.address or "",
            reference=reference,
            text=text or "",
            status_callback=callback,
        )
    return OutboundMessage(
        channel=Channel.EMAIL,
        to=message.address or "",
        reference=reference,
        subject=rendered.subject,
        text=text or "",
        html=html,
        unsubscribe_url=unsubscribe,
    )


# -- recording ----------------------------------------------------------------------------------------------------
def _record_sent(sent: list[Attempted]) -> None:
    """The provider has these messages. The truth wins whoever holds a row (a status webhook may already be
    ahead of us): ``sent`` unless a later state is known, the provider's id, a ``sent`` event each, and their
    cases move from ``open`` to ``contacting``. Set-based: a few statements per batch, none per row."""
    if not sent:
        return
    provider_ids = {a.ready.message_id: a.result.provider_message_id for a in sent}  # type: ignore[union-attr]
    db.session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id.in_(sorted(provider_ids)))
        .values(
            state=sa.case((OutboxMessage.state.in_(sources(S.SENT)), S.SENT.value), else_=OutboxMessage.state),
            sent_at=sa.func.coalesce(OutboxMessage.sent_at, utcnow()),
            provider_message_id=sa.case(provider_ids, value=OutboxMessage.id),
            error_code=None,
            error_text=None,
        )
        .execution_options(synchronize_session=False)
    )
    for a in sent:
        result = a.result
        assert result is not None
        _event_for(a.ready.message_id, "sent", {
            "channel": a.ready.channel, "outcome": result.outcome, "error_code": None, "error_text": None,
            "attempts": result.attempts, "provider_message_id": result.provider_message_id,
        })
    why = {a.ready.case_id: f"{a.ready.channel} message {a.ready.message_id} sent" for a in reversed(sent)
           if a.ready.case_id is not None}
    if why:
        cases = db.session.execute(
            sa.select(RecoveryCase.id, RecoveryCase.state)
            .where(RecoveryCase.id.in_(sorted(why)), RecoveryCase.state == "open").with_for_update()
        ).all()
        move_cases(cases, "contacting", reasons={c.id: why[c.id] for c in cases})


def _record_failure(message: OutboxMessage, ready: Ready, result: SendResult, now: datetime) -> str:
    """A provider answer that is not an acceptance, onto its (locked) row; returns the outcome (``fallback``:
    prepare it again)."""
    channel = ready.channel
    payload = {
        "channel": channel,
        "outcome": result.outcome,
        "error_code": result.error_code,
        "error_text": result.error_text,
        "attempts": result.attempts,
    }
    ours = message.claimed_by == ready.owner and message.state in ON_THE_WAY
    if message.state in SENT_STATES:  # a status webhook (or the answer to the dot) already proved it went
        _event(message, "late_result", {**payload, "state": message.state})
        return "sent"
    if not ours:
        _event(message, "late_result", {**payload, "state": message.state})
        return "lost"
    message.error_code = (result.error_code or "")[:32] or None
    message.error_text = (result.error_text or "")[:500] or None
    if result.unknown:
        if channel == "email":
            message.state = S.REVIEW
            _event(message, "review", {**payload, "why": "connection lost after the end of DATA"})
            return "review"
        message.state = S.UNKNOWN
        _event(message, "unknown", payload)
        return "unknown"
    if result.permanent:
        _event(message, "failed", payload)
        if result.opted_out and message.customer_id:
            from app.consent import opt_out

            opt_out(message.customer_id, [channel], source="provider", detail=result.error_code)
        if message.fallbacks:
            message.channel, message.fallbacks = message.fallbacks[0], list(message.fallbacks[1:])
            message.state = S.CLAIMED
            _event(message, "fallback", {"to": message.channel, "after": channel})
            return "fallback"
        message.state = S.FAILED
        return "failed"
    if result.retryable and message.attempts < MAX_ATTEMPTS:
        wait_for = RETRY_BACKOFF[min(message.attempts - 1, len(RETRY_BACKOFF) - 1)]
        if result.retry_after:
            wait_for = max(wait_for, timedelta(seconds=result.retry_after))
        message.state = S.SCHEDULED
        message.claimed_by = None
        message.scheduled_for = now + wait_for
        _event(message, "retry", {**payload, "at": (now + wait_for).isoformat()})
        return "retry"
    message.state = S.FAILED
    _event(message, "failed", payload)
    return "failed"


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _event(
    message: OutboxMessage, kind: str, payload: dict[str, Any] | None = None, at: datetime | None = None
) -> None:
    _event_for(message.id, kind, payload, at)


def _event_for(
    message_id: int, kind: str, payload: dict[str, Any] | None = None, at: datetime | None = None
) -> None:
    _add(MessageEvent, {"message_id": message_id, "kind": kind, "provider_payload": payload,
                        "occurred_at": at or datetime.now(UTC)})


def _payment_link(case: RecoveryCase, secret_key: str, message_id: int) -> str:
    token, row = new_payment_link(case.id, secret_key, message_id=message_id)
    _add(PaymentLink, row)
    return token


def _add(model: type[MessageEvent] | type[PaymentLink], row: dict[str, Any]) -> None:
    """A new row: collected by the batch being prepared or recorded, else added to the session."""
    batch = _batch_rows.get()
    if batch is not None:
        batch.rows.setdefault(model.__table__, []).append(row)
    else:
        db.session.add(model(**row))


@dataclass
class _BatchRows:
    """Rows a batch only adds (its messages' events, their payment links), written with one INSERT per table right
    before the batch commits, instead of as ORM objects one by one (the columns' defaults apply as they would)."""

    rows: dict[sa.Table, list[dict[str, Any]]] = field(default_factory=dict)

    def write(self) -> None:
        for table, rows in self.rows.items():
            db.session.execute(sa.insert(table), rows)
        self.rows = {}


_batch_rows: ContextVar[_BatchRows | None] = ContextVar("recoup_dispatch_batch_rows", default=None)


@contextmanager
def _rows_written_together() -> Iterator[_BatchRows]:
    """Within: new events and payment links are collected; the caller calls ``write()`` before it commits (what is
    not written is dropped with the transaction)."""
    rows = _BatchRows()
    reset = _batch_rows.set(rows)
    try:
        yield rows
    finally:
        _batch_rows.reset(reset)
