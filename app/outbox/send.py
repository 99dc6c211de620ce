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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import requests
import sqlalchemy as sa
from flask import Flask

from app.channels.base import OutboundMessage, SendResult
from app.extensions import db
from app.group_commit import GroupWriter, submit
from app.models import OutboxMessage
from app.models.types import UTCDateTime, utcnow
from app.ops.logs import log_context
from app.ops.metrics import provider_call
from app.outbox.batch import Attempted, Ready
from app.outbox.senders import DataCheckpoint, data_checkpoint
from app.outbox.states import OutboxState, check_move
from app.outbox.states import OutboxState as S
from app.writes import UNCACHED
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


# -- checkpoints, group-committed (app.group_commit) ----------------------------------------------------------------
# Every message passes a checkpoint, and every email a second mark after its dot: thousands a minute, each a write
# that must be committed before its thread goes on. On MariaDB a run's sending threads hand them to one writer thread
# per process, which commits all that came meanwhile in one transaction (one SELECT ... FOR UPDATE of the rows in key
# order, an UPDATE per kind, one commit): a statement and a commit per message cost the process more CPU than its
# provider call. On SQLite (one writer at a time anyway) each is written at once, by its own thread.

#: a thread waits this long for its mark to be committed (as long as a pool lets a caller wait for a connection);
#: then its send fails and the lease runs out as before (a checkpoint committed late leaves a row in ``delivering``
#: that was never sent: reconciliation asks the provider, or a person decides; never a second copy)
MARK_TIMEOUT_SECONDS = 30.0
#: the most marks one transaction writes
MARK_BATCH = 200
_MARKER = "recoup.outbox_marks"
_TRIES = 4


@dataclass(frozen=True)
class _Mark:
    """Move row ``mid`` from ``source`` to ``target`` if it is still ``owner``'s (``claimed_by``) and in ``source``."""

    mid: int
    owner: str | None
    source: OutboxState
    target: OutboxState
    sent_at: datetime | None = None


def _mark(mark: _Mark) -> bool:
    """``mark`` written and committed: did the row move?"""
    check_move(mark.mid, mark.source, mark.target)  # the table allows the step (else logged and raised)
    if db.engine.dialect.name != "mysql":
        return _write_marks(db.engine, [mark])[0]
    return submit(_MARKER, _new_marker, mark)


def _new_marker() -> GroupWriter[_Mark, bool]:
    kept = _KeptConnection()
    return GroupWriter("outbox-marks", db.engine, kept.write, batch=MARK_BATCH, timeout=MARK_TIMEOUT_SECONDS,
                       on_stop=kept.close)


class _KeptConnection:
    """The mark writer's own connection, kept while it runs (taking one from the pool for each transaction costs a
    ping and a rollback, more than the marks)."""

    def __init__(self) -> None:
        self.conn: sa.Connection | None = None

    def write(self, engine: sa.Engine, marks: Sequence[_Mark]) -> list[bool]:
        return _write_marks(engine, marks, lambda: self.connection(engine))

    def connection(self, engine: sa.Engine) -> sa.Connection:
        """The kept connection, a new one after it was closed or invalidated (a dropped server connection)."""
        if self.conn is None or self.conn.closed or self.conn.invalidated:
            self.close()
            self.conn = engine.connect()
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _write_marks(engine: sa.Engine, marks: Sequence[_Mark],
                 connection: Callable[[], sa.Connection] | None = None) -> list[bool]:
    """``marks`` in one transaction (again after a lock conflict or a dropped connection): whether each row moved.
    On ``connection()`` (kept by the caller), else on one from the pool."""
    from app.retry import lock_conflict

    for attempt in range(1, _TRIES + 1):
        try:
            if connection is None:
                with engine.begin() as conn:
                    return _marks_in(conn, marks)
            conn = connection()
            with conn.begin():
                return _marks_in(conn, marks)
        except sa.exc.DBAPIError as exc:
            if attempt == _TRIES or not (exc.connection_invalidated or lock_conflict(exc)):
                raise
    raise AssertionError("unreachable")


def _marks_in(conn: sa.Connection, marks: Sequence[_Mark]) -> list[bool]:
    """Lock the rows (in key order, as every writer of the outbox does), then move those still in the mark's source
    state and its owner's. Built as text with the ids written in as numbers (``int()`` of them): as expressions, a
    batch's statements cost more to build and compile than to run."""
    lock = " FOR UPDATE" if conn.dialect.name == "mysql" else ""
    held = {mid: (state, owner) for mid, state, owner in conn.execute(sa.text(
        f"SELECT id, state, claimed_by FROM {_OUTBOX.name} WHERE id IN ({_id_list(m.mid for m in marks)}) "
        f"ORDER BY id{lock}"), execution_options=UNCACHED)}
    moved = [held.get(mark.mid) == (mark.source, mark.owner) for mark in marks]
    by_target: dict[tuple[OutboxState, datetime | None], list[int]] = {}
    for mark, moves in zip(marks, moved, strict=True):
        if moves:
            by_target.setdefault((mark.target, mark.sent_at), []).append(mark.mid)
    for (target, sent_at), mids in by_target.items():
        params: dict[str, Any] = {"state": target.value, "updated_at": utcnow()}
        if sent_at is not None:
            params["sent_at"] = sent_at
        sets = ", ".join(f"{name} = :{name}" for name in params)
        conn.execute(sa.text(f"UPDATE {_OUTBOX.name} SET {sets} WHERE id IN ({_id_list(mids)})")
                     .bindparams(*(sa.bindparam(name, type_=UTCDateTime) for name in params if name != "state")),
                     params, execution_options=UNCACHED)
    return moved


def _id_list(ids: Iterable[int]) -> str:
    return ",".join(str(int(mid)) for mid in sorted(set(ids)))


def _checkpoint(message_id: int, owner: str | None) -> bool:
    """Right before the provider may have the message (an email's final dot, an SMS or WhatsApp request): still
    ours? then record (committed) that it may now have it."""
    return _mark(_Mark(message_id, owner, S.SENDING, S.DELIVERING))


def _delivered(message_id: int, owner: str | None, code: int) -> None:
    """The server answered the dot: record it at once (before QUIT and the bookkeeping). 250: it has the message,
    which keeps the window where a crash leaves an email for review as short as one commit. Anything else: it
    refused the message, so nothing was delivered: back to ``sending`` (a retry passes the checkpoint again)."""
    if code == 250:
        _mark(_Mark(message_id, owner, S.DELIVERING, S.SENT, sent_at=utcnow()))
    else:
        _mark(_Mark(message_id, owner, S.DELIVERING, S.SENDING))


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
