"""The webhook inbox: a provider's webhook is verified, stored and answered at once, then applied by a worker.

Providers want a quick answer (Twilio waits 15 s, Meta and NMI retry a slow or failed delivery) and send in bursts: a
campaign's delivery statuses, a gateway's batch of declines. So a webhook's request does only what must happen before
the answer: check the signature, read the body enough to refuse one that cannot be used (400), and store it as an
:class:`~app.models.InboundEvent`, keyed by the provider's own event id, so a re-delivery is one row. The answer
(200) means "stored": nothing received is lost if a worker, Redis or this process stops a moment later. On MariaDB
the webhooks a web process receives at the same time are stored together, in one INSERT and one commit, and each is
answered only once that has committed (group commit: :mod:`app.group_commit`).

A worker applies what waits (:func:`apply_waiting`), woken by the first webhook of a burst
(:meth:`~app.queue.JobQueue.enqueue_once`), and the dispatch job's sweep applies whatever waited too long (a wake-up
lost with Redis). Applying a delivery status claims its row in the same transaction as its effect (exactly once);
NMI failures are applied in batches through the same ingest as a fetch (idempotent: a failure stored twice is one
transaction and one case). A row that fails :data:`MAX_ATTEMPTS` times is set aside with its error, for an operator.

What must hold before the answer is applied before it: an inbound message (a customer's STOP) and a WhatsApp template
status, rare and urgent, are applied in the request. On the embedded default (no Redis), jobs run in the request
anyway.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.group_commit import GroupWriter, WriteTimeout, submit, writer_of
from app.models import GatewayAccount, InboundEvent
from app.models.types import utcnow
from app.queue import get_queue
from app.writes import autocommit_engine

log = logging.getLogger(__name__)

#: the providers whose webhooks wait here (other InboundEvent rows are the WhatsApp user-id directory)
PROVIDERS = ("nmi", "twilio", "whatsapp")
MAX_ATTEMPTS = 5
#: a row waiting longer than this is applied by the dispatch job's sweep (its wake-up may have been lost)
SWEEP_AFTER = timedelta(seconds=30)
BATCH = 200
_ONCE_KEY = "inbox"
_EVENTS = InboundEvent.__table__


#: built once (the values are parameters): a webhook's request does little else
_INSERT = sa.insert(_EVENTS)
_INSERT_RETURNING = _INSERT.returning(_EVENTS.c.id, _EVENTS.c.provider, _EVENTS.c.event_id)
_FIND = sa.select(_EVENTS.c.id).where(_EVENTS.c.provider == sa.bindparam("provider"),
                                      _EVENTS.c.event_id == sa.bindparam("event_id"))
#: the woken job looks once more this long after it found nothing (a webhook a moment later may not have woken
#: another: app.queue.RQQueue.enqueue_once), so none of a burst is left for the sweep
SETTLE_SECONDS = 0.2


def accept(provider: str, event_id: str, event_type: str, payload: dict[str, Any], *,
           account_id: int | None = None, apply_now: bool = False) -> tuple[int, bool]:
    """Store one verified webhook, committed; ``(row id, duplicate)``. A new one is applied now (``apply_now``, or
    at once by the in-process queue, in this session) or handed to a worker (stored apart from this session, with
    other requests' webhooks: :func:`_store_alone`); a duplicate (a re-delivery) changes nothing."""
    row = {"provider": provider, "event_id": event_id[:128], "event_type": event_type[:64], "payload": payload,
           "account_id": account_id, "received_at": utcnow(), "attempts": 0, "processed_at": None, "error": None}
    if not apply_now and get_queue().kind == "rq":
        row_id, duplicate = _store_alone(row)
    else:
        # applied in this session next: stored through it, so that its commit makes the row visible to it
        # (MariaDB's repeatable read would hide a row another connection wrote after its snapshot)
        try:
            row_id, duplicate = db.session.execute(_INSERT, row).inserted_primary_key[0], False
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            key = (provider, row["event_id"])
            with db.engine.connect() as conn:
                found = _ids(conn, [key]).get(key)
            if found is None:
                raise
            row_id, duplicate = found, True
    if duplicate:
        return row_id, True
    if apply_now:
        apply_rows([row_id])
    else:
        wake_worker()
    return row_id, False


def _store_alone(row: dict[str, Any]) -> tuple[int, bool]:
    """Stored and committed apart from the caller's session, for a worker to apply later; ``(row id, duplicate)``.
    On MariaDB by this process's writer, with whatever other requests hand it meanwhile (:mod:`app.group_commit`);
    elsewhere (SQLite: one writer at a time anyway) at once."""
    if db.engine.dialect.name != "mysql":
        with db.engine.begin() as conn:
            return _write_together(conn, [row])[0]
    try:
        return submit(_WRITER, _new_writer, row)
    except WriteTimeout as exc:
        raise InboxUnavailable(str(exc)) from exc


# -- group commit (app.group_commit) --------------------------------------------------------------------------------
# Each web process has one writer thread; a request hands it its row and waits; the writer stores every row handed to
# it meanwhile in one INSERT, on a connection in autocommit mode (app.writes: the statement is its own transaction,
# one round trip and one commit for them all) and then answers them all.

#: the most rows one INSERT stores
WRITE_BATCH = 100
#: a request waits this long for its commit, then fails (a 5xx: the provider sends it again, a duplicate if it was
#: stored after all)
WRITE_TIMEOUT_SECONDS = 10.0
_WRITER = "recoup.inbox_writer"


class InboxUnavailable(Exception):
    """A webhook could not be stored in time: it is answered 5xx, and its provider sends it again."""


def _new_writer() -> GroupWriter[dict[str, Any], tuple[int, bool]]:
    # _write looked up at each batch (a test holds it back)
    return GroupWriter("inbox", autocommit_engine(), lambda engine, rows: _write(engine, rows),
                       batch=WRITE_BATCH, timeout=WRITE_TIMEOUT_SECONDS)


def _writer() -> GroupWriter[dict[str, Any], tuple[int, bool]]:
    """This process's writer for the app's database."""
    return writer_of(_WRITER, _new_writer)


def prepare() -> None:
    """Start this process's writer, a connection open (a web process starting: app.web.hooks.prepare)."""
    if db.engine.dialect.name == "mysql" and get_queue().kind == "rq":
        with _writer().engine.connect():
            pass


_TRIES = 4


def _write(engine: sa.Engine, rows: Sequence[dict[str, Any]]) -> list[tuple[int, bool] | BaseException]:
    """Store ``rows`` on ``engine`` (autocommit), committed: ``(row id, duplicate)`` of each, in order, or why it
    could not be stored. All in one statement; only if that fails for a reason other than re-deliveries (a row whose
    account was deleted a moment ago, say), each on its own, so that one row that can never be stored holds back no
    other."""
    with engine.connect() as conn:
        try:
            return list(_write_together(conn, rows))
        except IntegrityError:
            if len(rows) == 1:
                raise
        results: list[tuple[int, bool] | BaseException] = []
        for row in rows:
            try:
                results.extend(_write_together(conn, [row]))
            except Exception as exc:
                results.append(exc)
        return results


def _write_together(conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> list[tuple[int, bool]]:
    """``rows`` in one INSERT that returns their ids: committed by itself on an autocommit connection, else in the
    caller's transaction. A row whose provider and event id are stored already (a re-delivery), or come twice in
    ``rows``, is one row: a duplicate."""
    from app.retry import lock_conflict

    unique: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        unique.setdefault((row["provider"], row["event_id"]), row)
    # in one order in every process: two writers storing the same keys wait for each other, never deadlock
    keys = sorted(unique)
    existing: dict[tuple[str, str], int] = {}
    for attempt in range(1, _TRIES + 1):
        ours: dict[tuple[str, str], int] = {}
        new = [unique[key] for key in keys if key not in existing]
        try:
            if new and conn.dialect.insert_executemany_returning:  # MariaDB, SQLite
                ours = {(provider, event_id): row_id
                        for row_id, provider, event_id in conn.execute(_INSERT_RETURNING, new)}
            elif new:
                conn.execute(_INSERT, new)  # MySQL: then their ids
                ours = _ids(conn, [(row["provider"], row["event_id"]) for row in new])
            break
        except IntegrityError:
            # some were stored meanwhile (re-deliveries): they are duplicates; if none was, the error is another
            found = _ids(conn, keys)
            if attempt == _TRIES or not found.keys() - existing.keys():
                raise
            existing.update(found)
        except sa.exc.DBAPIError as exc:
            # a kept connection the server had dropped, or a lock conflict: again (if a lost commit did land, its
            # rows are duplicates now)
            if attempt == _TRIES or not (exc.connection_invalidated or lock_conflict(exc)):
                raise
            if exc.connection_invalidated:
                conn.rollback()  # then it connects again
    results = []
    given: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row["provider"], row["event_id"])
        if key in given:  # twice in rows: the first of them is the row
            results.append((given[key], True))
        else:
            given[key] = ours.get(key) or existing[key]
            results.append((given[key], key not in ours))
    return results


def _ids(conn: sa.Connection, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The ids of the stored rows with these keys, as the database compares them (its collation may take two
    spellings of an event id for one)."""
    found = {(provider, event_id): row_id for provider, event_id, row_id in conn.execute(
        sa.select(_EVENTS.c.provider, _EVENTS.c.event_id, _EVENTS.c.id).where(
            _EVENTS.c.provider.in_({provider for provider, _ in keys}),
            _EVENTS.c.event_id.in_([event_id for _, event_id in keys])))}
    ids = {key: found[key] for key in keys if key in found}
    for provider, event_id in set(keys) - ids.keys():
        row_id = conn.execute(_FIND, {"provider": provider, "event_id": event_id}).scalar()
        if row_id is not None:
            ids[(provider, event_id)] = row_id
    return ids


def wake_worker() -> None:
    """Wake a worker to apply what waits; when the queue is away, the sweep will (the rows are stored)."""
    from workers import jobs

    try:
        get_queue().enqueue_once(_ONCE_KEY, jobs.apply_webhooks, queue="urgent")
    except Exception:
        log.warning("could not wake a worker for the webhook inbox; the sweep will apply what waits", exc_info=True)


def waiting(*, older_than: timedelta | None = None, limit: int = BATCH) -> list[int]:
    """Ids of stored webhooks not applied yet, oldest first."""
    query = sa.select(InboundEvent.id).where(InboundEvent.processed_at.is_(None),
                                             InboundEvent.provider.in_(PROVIDERS))
    if older_than is not None:
        query = query.where(InboundEvent.received_at < utcnow() - older_than)
    return list(db.session.scalars(query.order_by(InboundEvent.id).limit(limit)))


def woken() -> None:
    """The woken job starts: a webhook from now on wakes another."""
    get_queue().started(_ONCE_KEY)


def apply_waiting(*, older_than: timedelta | None = None, budget_seconds: float = 20.0,
                  settle: bool = False) -> dict[str, int]:
    """Apply stored webhooks until none waits (or the time budget is spent: then a new job is woken); ``settle``:
    look once more :data:`SETTLE_SECONDS` after finding none (the woken job on Redis)."""
    import time

    totals = {"applied": 0, "failed": 0}
    started = time.monotonic()
    settled = not settle
    while True:
        # a new transaction each time: MariaDB's repeatable read would otherwise show the rows of the first look
        # again, and never those stored since
        db.session.commit()
        ids = waiting(older_than=older_than)
        if not ids:
            if settled:
                break
            settled = True  # a webhook that arrived while this job read may not have woken another: look again
            time.sleep(SETTLE_SECONDS)
            continue
        for key, value in apply_rows(ids).items():
            totals[key] += value
        if time.monotonic() - started > budget_seconds:
            woken()  # this job is done: the next one must be enqueued
            wake_worker()
            break
    return totals


def apply_rows(ids: Sequence[int]) -> dict[str, int]:
    """Apply the stored webhooks ``ids`` (each at most once, whoever else is applying them)."""
    rows = db.session.execute(sa.select(InboundEvent.id, InboundEvent.provider, InboundEvent.account_id)
                              .where(InboundEvent.id.in_(ids), InboundEvent.processed_at.is_(None))
                              .order_by(InboundEvent.id)).all()
    db.session.rollback()
    totals = {"applied": 0, "failed": 0}
    nmi: dict[int | None, list[int]] = {}
    for row_id, provider, account_id in rows:
        if provider == "nmi":
            nmi.setdefault(account_id, []).append(row_id)
        else:
            totals["applied" if _apply_one(row_id, _APPLY[provider]) else "failed"] += 1
    for account_id, batch in nmi.items():
        applied = _apply_nmi(account_id, batch)
        totals["applied"] += applied
        totals["failed"] += len(batch) - applied
    return totals


def _claim(row_id: int) -> dict[str, Any] | None:
    """Mark ``row_id`` applied in the open transaction (its row lock held until the commit that carries its
    effect); its payload, or None when someone else applied it."""
    claimed = db.session.execute(sa.update(_EVENTS).where(_EVENTS.c.id == row_id, _EVENTS.c.processed_at.is_(None))
                                 .values(processed_at=utcnow())).rowcount
    if not claimed:
        return None
    return db.session.scalar(sa.select(InboundEvent.payload).where(InboundEvent.id == row_id))  # type: ignore[no-any-return]


def _apply_one(row_id: int, apply: Callable[[dict[str, Any]], None]) -> bool:
    """Claim and apply one delivery webhook in one transaction (the appliers commit it)."""
    try:
        payload = _claim(row_id)
        if payload is None:
            db.session.rollback()
            return True
        apply(payload)
        db.session.commit()
        return True
    except Exception as exc:
        db.session.rollback()
        _failed([row_id], exc)
        return False


def _apply_twilio(payload: dict[str, Any]) -> None:
    from app.channels.sms import parse_status_callback
    from app.outbox.delivery import apply_status

    apply_status(parse_status_callback(payload["form"], payload.get("url")))


def _apply_whatsapp(payload: dict[str, Any]) -> None:
    from app.channels.whatsapp import parse_webhook
    from app.messages.templates_service import apply_whatsapp_template_update
    from app.outbox.delivery import apply_status, handle_inbound

    webhook = parse_webhook(payload)
    for update in webhook.statuses:
        apply_status(update)
    for message in webhook.messages:
        handle_inbound(message)
    for template in webhook.template_updates:
        apply_whatsapp_template_update(template)


_APPLY: dict[str, Callable[[dict[str, Any]], None]] = {"twilio": _apply_twilio, "whatsapp": _apply_whatsapp}


def _apply_nmi(account_id: int | None, ids: list[int]) -> int:
    """NMI failures of one account, ingested together (as a fetch's page is), then marked applied. Ingest is
    idempotent, so a worker stopping in between leaves rows that, applied again, change nothing."""
    from app.accounts.gateway_accounts import gateway_for
    from app.ingest.quarantine import WEBHOOK, storable
    from app.ingest.transactions import hand_to_planning, ingest_context, ingest_records
    from app.ingest.webhooks import is_failure_event

    payloads = dict(db.session.execute(sa.select(InboundEvent.id, InboundEvent.payload)
                                       .where(InboundEvent.id.in_(ids))).all())
    account = db.session.get(GatewayAccount, account_id) if account_id is not None else None
    if account is None:
        _failed(ids, LookupError(f"the NMI account {account_id} that verified it is gone"), final=True)
        return 0
    try:
        gateway = gateway_for(account)
        records = []
        for row_id in ids:
            event = gateway.parse_webhook(json.dumps(payloads[row_id]).encode())
            if is_failure_event(event.event_type) and event.transaction is not None:
                records.append(event.transaction)
        ctx = ingest_context(account)
        db.session.rollback()
        result = ingest_records([_storable(r, storable) for r in records], ctx, source=WEBHOOK)
        db.session.execute(sa.update(_EVENTS).where(_EVENTS.c.id.in_(ids), _EVENTS.c.processed_at.is_(None))
                           .values(processed_at=utcnow()))
        db.session.commit()
    except Exception as exc:
        db.session.rollback()
        _failed(ids, exc)
        return 0
    if result.case_ids:
        hand_to_planning(result.case_ids)
    return len(ids)


def _storable(record: Any, storable: Callable[[Any], Any]) -> Any:
    from dataclasses import replace

    return replace(record, raw=storable(dict(record.raw)))


def _failed(ids: Sequence[int], exc: BaseException, *, final: bool = False) -> None:
    """Count a failed try on each row; one that failed :data:`MAX_ATTEMPTS` times, or ``final`` (it can never work),
    is set aside: applied no more, counted by ``recoup_webhook_inbox{state="set_aside"}``, its error kept."""
    log.error("stored webhook(s) %s could not be applied", list(ids), exc_info=exc)
    text = f"{type(exc).__name__}: {exc}"[:2000]
    waiting_ones = _EVENTS.c.id.in_(ids) & _EVENTS.c.processed_at.is_(None)
    try:
        db.session.execute(sa.update(_EVENTS).where(waiting_ones).values(
            attempts=MAX_ATTEMPTS if final else _EVENTS.c.attempts + 1, error=text))
        db.session.execute(sa.update(_EVENTS).where(waiting_ones & (_EVENTS.c.attempts >= MAX_ATTEMPTS))
                           .values(processed_at=utcnow()))
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.exception("could not record the failure of stored webhook(s) %s", list(ids))

