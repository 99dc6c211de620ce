"""The provider call, on a sending thread, after a checkpoint: ``sending`` → ``delivering``, committed, right before
the provider may have the message (an SMS or WhatsApp request is about to be written; an email's final dot is). A
worker that dies before its checkpoint sent nothing, and the row is simply due again; one that dies after it leaves a
row the provider is asked about, or a person decides (:mod:`app.outbox.reconcile`).

A message that can never be built (a header our builder refuses because it would be injected, an address or a body
a channel refuses as built, text that cannot be encoded) raises in the sender before anything goes out. That is no
transient fault: the same row would build the same message next time. It comes back as an *unbuildable* result,
which :mod:`app.outbox.record` sends to review at once with the reason, instead of leaving the row in ``sending``
for the lease to run out and the dispatcher to claim it again, for ever.
"""

from __future__ import annotations

import email.errors
import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import requests
import sqlalchemy as sa
from flask import Flask

from app.channels.base import OutboundMessage, SendResult
from app.extensions import db
from app.models import OutboxMessage
from app.models.types import utcnow
from app.ops.logs import log_context
from app.ops.metrics import provider_call
from app.outbox.batch import Attempted, Ready
from app.outbox.senders import DataCheckpoint, data_checkpoint
from app.outbox.states import OutboxState, sources
from app.outbox.states import OutboxState as S
from app.writes import autocommit_engine, one_statement
from rules.vocabulary import Channel

_OUTBOX = OutboxMessage.__table__
log = logging.getLogger(__name__)

#: the ``error_code`` of a message that cannot be built as it is (:func:`unbuildable`)
UNBUILDABLE = "unbuildable"
#: what a sender raises for a message it can never build or send as it is (channels' InvalidMessageError is a
#: ValueError; so are the email package's refusal of a line break in a header and an encoding error); a database or
#: network error is none of these, and stays what it was (the lease runs out, the row is claimed again)
_UNBUILDABLE_ERRORS = (ValueError, email.errors.MessageError)


def unbuildable(exc: BaseException) -> SendResult:
    """The result of a send that raised because the message cannot be built: nothing was sent."""
    text = f"the message cannot be built: {type(exc).__name__}: {exc}"
    return SendResult(accepted=False, status="failed", error_code=UNBUILDABLE, error_text=text[:500], permanent=True,
                      attempts=1)


def _guarded(send: Callable[[OutboundMessage], SendResult], ready: Ready,
             point: DataCheckpoint | None = None) -> SendResult:
    """``send(ready.outbound)``; a message the sender refuses to build comes back as :func:`unbuildable`. Not after
    an email's final dot, nor a ValueError raised while reading a provider's answer (requests' JSONDecodeError):
    then the provider may have it, and it is not ours to call unbuildable."""
    try:
        return send(ready.outbound)
    except Exception as exc:
        if (not isinstance(exc, _UNBUILDABLE_ERRORS) or isinstance(exc, requests.RequestException)
                or (point is not None and point.reached_dot)):
            raise
        log.warning("message %s cannot be built for %s: %s", ready.message_id, ready.channel, exc)
        return unbuildable(exc)


def send_one(app: Flask, ready: Ready, senders: dict[str, Any]) -> Attempted:
    """The provider call (a sending thread), after its checkpoint: an SMS or WhatsApp right before the request, an
    email right before the final dot. A row no longer ours at its checkpoint is not sent (``lost``)."""
    with log_context(message_id=ready.message_id, case_id=ready.case_id):
        if ready.channel == Channel.EMAIL:
            return _send_email(app, ready, senders)
        return _send_request(app, ready, senders)


def _send_request(app: Flask, ready: Ready, senders: dict[str, Any]) -> Attempted:
    """An HTTP provider (Twilio, the WhatsApp Cloud API): the checkpoint, then the request. Messages wait on the
    sending threads' queue in ``sending``; only those whose request may have left are in ``delivering``."""
    with app.app_context():
        try:
            ours = _checkpoint(ready.message_id, ready.owner)
        finally:
            db.session.remove()
    if not ours:
        return Attempted(ready, None, "lost")
    with provider_call(ready.channel, "send"):
        return Attempted(ready, _guarded(senders[ready.channel].send, ready))


def _send_email(app: Flask, ready: Ready, senders: dict[str, Any]) -> Attempted:
    mid, owner = ready.message_id, ready.owner
    with app.app_context():
        try:
            with data_checkpoint(lambda: _checkpoint(mid, owner), lambda code: _delivered(mid, owner, code)) as point, \
                    provider_call(Channel.EMAIL, "send"):
                result = _guarded(senders[Channel.EMAIL].send, ready, point)
        finally:
            db.session.remove()
    if point.vetoed:
        return Attempted(ready, None, "lost")
    if result.unknown and not point.reached_dot:
        # the connection went before the dot: the server dropped the message; nothing was delivered
        result = replace(result, unknown=False, retryable=True, error_code="connection_lost_before_dot")
    return Attempted(ready, result)


def _held_by(state: OutboxState, target: OutboxState) -> sa.ColumnElement[bool]:
    """Still ours, in ``state`` (which must be allowed to move to ``target``). The states are fixed values, not an
    expanding ``IN`` list: an expanding list is rendered again on every execution, thousands of times a minute."""
    states = [sa.literal(s, _OUTBOX.c.state.type) for s in sources(target, among={state})]
    return sa.and_(_OUTBOX.c.id == sa.bindparam("mid"), _OUTBOX.c.state.in_(states),
                   _OUTBOX.c.claimed_by.is_not_distinct_from(sa.bindparam("owner")))


# built once: these run for every email, from the sending threads, each on a pooled connection of its own
_TO_DELIVERING = sa.update(_OUTBOX).where(_held_by(S.SENDING, S.DELIVERING)).values(state=S.DELIVERING)

_DELIVERED = sa.update(_OUTBOX).where(_held_by(S.DELIVERING, S.SENT)).values(state=S.SENT,
                                                                            sent_at=sa.bindparam("sent_at"))


_REFUSED = sa.update(_OUTBOX).where(_held_by(S.DELIVERING, S.SENDING)).values(state=S.SENDING)


def _mark(statement: sa.Update, params: dict[str, Any]) -> int:
    with _write_slot():
        return one_statement(statement, params).rowcount


#: per one-statement engine (app.writes): how many sending threads may hold one of its connections at once
_slots: weakref.WeakKeyDictionary[sa.Engine, tuple[threading.Semaphore, float] | None] = weakref.WeakKeyDictionary()
_slots_guard = threading.Lock()


def _slots_of(engine: sa.Engine) -> tuple[threading.Semaphore, float] | None:
    """(the kept connections as a semaphore, how long the pool lets a caller wait); None: no bound (SQLite, where
    one-statement writes use the app's engine, or a pool that keeps none)."""
    pool = engine.pool
    if engine is db.engine or not isinstance(pool, sa.pool.QueuePool) or pool.size() <= 0:
        return None
    return threading.BoundedSemaphore(pool.size()), pool.timeout()


@contextmanager
def _write_slot() -> Iterator[None]:
    """At most the one-statement engine's kept connections in use at once (MariaDB). A run has more sending threads
    than that engine keeps connections: past them its pool opens overflow connections and closes them again as soon
    as they come back, and opening one costs far more than the statement (a TCP and MariaDB handshake, and a TLS
    context PyMySQL builds for each). A thread waits here for a kept connection instead, as long as the pool would
    have let it wait for one; then it goes on (and the pool decides, as before)."""
    engine = autocommit_engine()
    with _slots_guard:
        if engine not in _slots:
            _slots[engine] = _slots_of(engine)
        slot = _slots[engine]
    if slot is None:
        yield
        return
    semaphore, timeout = slot
    acquired = semaphore.acquire(timeout=timeout)
    try:
        yield
    finally:
        if acquired:
            semaphore.release()


def _checkpoint(message_id: int, owner: str | None) -> bool:
    """Right before the provider may have the message (an email's final dot, an SMS or WhatsApp request): still
    ours? then record (committed) that it may now have it."""
    return bool(_mark(_TO_DELIVERING, {"mid": message_id, "owner": owner}))


def _delivered(message_id: int, owner: str | None, code: int) -> None:
    """The server answered the dot: record it at once (before QUIT and the bookkeeping). 250: it has the message,
    which keeps the window where a crash leaves an email for review as short as one commit. Anything else: it
    refused the message, so nothing was delivered: back to ``sending`` (a retry passes the checkpoint again)."""
    if code == 250:
        _mark(_DELIVERED, {"mid": message_id, "owner": owner, "sent_at": utcnow()})
    else:
        _mark(_REFUSED, {"mid": message_id, "owner": owner})


def widen_http_pools(senders: dict[str, Any], concurrency: int) -> None:
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
