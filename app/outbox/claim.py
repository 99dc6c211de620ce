"""Claiming due rows (``scheduled`` -> ``claimed``, once, whoever else is claiming) and keeping the claim alive (the
lease: :class:`Heartbeat`)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import datetime

import sqlalchemy as sa
from flask import Flask

from app.extensions import db
from app.models import OutboxMessage
from app.models.types import utcnow
from app.outbox.settings import setting
from app.outbox.states import IN_FLIGHT, sources
from app.outbox.states import OutboxState as S
from rules.vocabulary import CHANNELS, PRIORITIES, Priority

log = logging.getLogger(__name__)

_OUTBOX = OutboxMessage.__table__

CLAIMABLE = sources(S.CLAIMED, among={S.SCHEDULED})  # only rows waiting for their time are claimed


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def new_token() -> str:
    return f"{worker_name()}:{uuid.uuid4().hex[:8]}"[-64:]


def claim_one(message_id: int, token: str) -> bool:
    """Claim one due row now rather than at the next run (a receipt the customer's request asks to send at once).
    False when it is not waiting any more (a dispatch run has it, or it went) or not due yet."""
    changed = db.session.execute(
        sa.update(_OUTBOX).where(_OUTBOX.c.id == message_id, _OUTBOX.c.state.in_(CLAIMABLE),
                                 _OUTBOX.c.scheduled_for <= utcnow())
        .values(state=S.CLAIMED, claimed_by=token, claimed_at=utcnow())
    ).rowcount
    db.session.commit()
    return bool(changed)


def claim_due(now: datetime, limit: int, *, token: str | None = None) -> list[int]:
    """Claim up to ``limit`` due messages, most urgent first, then oldest first. A row is claimed once, whoever
    else is claiming."""
    token = token or new_token()
    if db.engine.dialect.name == "mysql":
        claimed = _lock_due(now, limit)
        changed = db.session.execute(
            sa.update(_OUTBOX).where(_OUTBOX.c.id.in_(claimed), _OUTBOX.c.state.in_(CLAIMABLE))
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
        sa.update(_OUTBOX).where(_OUTBOX.c.id.in_(candidates), _OUTBOX.c.state.in_(CLAIMABLE))
        .values(state=S.CLAIMED, claimed_by=token, claimed_at=utcnow())
    )
    db.session.commit()
    priority = sa.case({p: p.rank for p in PRIORITIES}, value=OutboxMessage.priority, else_=Priority.DEFAULT.rank)
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
        .where(_OUTBOX.c.state.in_(CLAIMABLE), _OUTBOX.c.priority == name, _OUTBOX.c.scheduled_for <= now,
               _OUTBOX.c.channel.in_(CHANNELS))
        .order_by(_OUTBOX.c.scheduled_for, _OUTBOX.c.id)
    )


def _lock_due(now: datetime, limit: int) -> list[int]:
    """MariaDB: lock up to ``limit`` due rows that no other claim holds (``SKIP LOCKED``), priority by priority, in
    claim order; usually one statement. Read committed: the range is locked without its gaps, so the planner's
    inserts never wait for a claim."""
    if not db.session().in_transaction():
        db.session.connection(execution_options={"isolation_level": "READ COMMITTED"})
    got: list[int] = []
    for name in PRIORITIES:
        if len(got) >= limit:
            break
        got += db.session.scalars(_due_rows(name, now).limit(limit - len(got)).with_for_update(skip_locked=True))
    return got


def _due_candidates(now: datetime, limit: int) -> list[int]:
    """Up to ``limit`` due rows' ids, most urgent first, then oldest first: the ``limit`` oldest of each priority,
    merged in one statement."""
    parts = []
    for rank, name in enumerate(PRIORITIES):
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
        # One row's lease renewed by primary key (a statement per row, sent together). ``id IN (...) AND state IN
        # (...)`` let MariaDB walk the state index and lock its entries before the rows, the opposite order to a
        # send's own update of one row, and the two deadlocked. (The states are fixed values, not an expanding list,
        # which a statement sent for many rows cannot have.)
        outbox = OutboxMessage.__table__
        in_flight = [sa.literal(s, outbox.c.state.type) for s in IN_FLIGHT]
        self._renew = sa.update(outbox).where(outbox.c.id == sa.bindparam("mid"), outbox.c.claimed_by == token,
                                              outbox.c.state.in_(in_flight))

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
                    now = utcnow()
                    for start in range(0, len(held), 500):
                        db.session.connection().execute(
                            self._renew.values(claimed_at=now), [{"mid": mid} for mid in held[start:start + 500]]
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
