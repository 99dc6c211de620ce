"""What a batch carries between its steps (:class:`Ready`, :class:`Attempted`) and the rows it only adds (events,
payment links), written together right before it commits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from app.channels.base import OutboundMessage, SendResult
from app.extensions import db
from app.models import MessageEvent, OutboxMessage, PaymentLink, RecoveryCase
from app.payments.links import new_payment_link


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


def add_event(
    message: OutboxMessage, kind: str, payload: dict[str, Any] | None = None, at: datetime | None = None
) -> None:
    add_event_for(message.id, kind, payload, at)


def add_event_for(
    message_id: int, kind: str, payload: dict[str, Any] | None = None, at: datetime | None = None
) -> None:
    add_row(MessageEvent, {"message_id": message_id, "kind": kind, "provider_payload": payload,
                        "occurred_at": at or datetime.now(UTC)})


def payment_link(case: RecoveryCase, secret_key: str, message_id: int) -> str:
    token, row = new_payment_link(case.id, secret_key, message_id=message_id)
    add_row(PaymentLink, row)
    return token


def add_row(model: type[MessageEvent] | type[PaymentLink], row: dict[str, Any]) -> None:
    """A new row: collected by the batch being prepared or recorded, else added to the session."""
    batch = _batch_rows.get()
    if batch is not None:
        batch.rows.setdefault(model.__table__, []).append(row)
    else:
        db.session.add(model(**row))


@dataclass
class BatchRows:
    """Rows a batch only adds (its messages' events, their payment links), written with one INSERT per table right
    before the batch commits, instead of as ORM objects one by one (the columns' defaults apply as they would)."""

    rows: dict[sa.Table, list[dict[str, Any]]] = field(default_factory=dict)

    def write(self) -> None:
        for table, rows in self.rows.items():
            db.session.execute(sa.insert(table), rows)
        self.rows = {}


_batch_rows: ContextVar[BatchRows | None] = ContextVar("recoup_dispatch_batch_rows", default=None)


@contextmanager
def rows_written_together() -> Iterator[BatchRows]:
    """Within: new events and payment links are collected; the caller calls ``write()`` before it commits (what is
    not written is dropped with the transaction)."""
    rows = BatchRows()
    reset = _batch_rows.set(rows)
    try:
        yield rows
    finally:
        _batch_rows.reset(reset)
