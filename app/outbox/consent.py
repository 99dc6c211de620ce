"""Consent: opt-outs take effect at once, every change is kept in the consent history."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import sqlalchemy as sa

from app.extensions import db
from app.models import ConsentEvent, Customer, OptOut, OutboxMessage
from app.outbox.states import WAITING, OutboxState, sources

log = logging.getLogger(__name__)


def opt_out(customer_id: int, channels: Iterable[str], *, source: str, detail: str | None = None) -> list[str]:
    """Opt a customer out of channels; returns the channels that were newly opted out."""
    added = []
    for channel in channels:
        exists = db.session.scalar(
            sa.select(OptOut.id).where(OptOut.customer_id == customer_id, OptOut.channel == channel)
        )
        if exists is None:
            db.session.add(OptOut(customer_id=customer_id, channel=channel, source=source, detail=detail))
            added.append(channel)
        db.session.add(
            ConsentEvent(customer_id=customer_id, channel=channel, action="opt_out", source=source, detail=detail)
        )
    db.session.flush()
    return added


def opt_in(customer_id: int, channels: Iterable[str], *, source: str, detail: str | None = None) -> None:
    for channel in channels:
        db.session.execute(sa.delete(OptOut).where(OptOut.customer_id == customer_id, OptOut.channel == channel))
        db.session.add(
            ConsentEvent(customer_id=customer_id, channel=channel, action="opt_in", source=source, detail=detail)
        )
    db.session.flush()


def opted_out_channels(customer_id: int | None) -> set[str]:
    if customer_id is None:
        return set()
    return set(db.session.scalars(sa.select(OptOut.channel).where(OptOut.customer_id == customer_id)))


def opted_out_channels_of(customer_ids: Iterable[int]) -> dict[int, set[str]]:
    """:func:`opted_out_channels` for many customers in one query (customers with none are left out)."""
    ids = {i for i in customer_ids if i is not None}
    blocked: dict[int, set[str]] = {}
    if ids:
        rows = db.session.execute(
            sa.select(OptOut.customer_id, OptOut.channel).where(OptOut.customer_id.in_(ids))
        )
        for customer_id, channel in rows:
            blocked.setdefault(customer_id, set()).add(channel)
    return blocked


def customers_with_phone(phone_e164: str) -> list[Customer]:
    return list(db.session.scalars(sa.select(Customer).where(Customer.phone_e164 == phone_e164)))


def customers_with_email(email: str) -> list[Customer]:
    return list(db.session.scalars(sa.select(Customer).where(Customer.email == email.strip().lower())))


def skip_scheduled(customer_id: int, channels: Iterable[str], reason: str) -> int:
    """Messages still waiting on channels the customer just left move to their fallback or are skipped now."""
    channels = tuple(channels)
    moved = 0
    rows = db.session.scalars(
        sa.select(OutboxMessage).where(
            OutboxMessage.customer_id == customer_id,
            OutboxMessage.state.in_(sources(OutboxState.SKIPPED, among=WAITING)),  # paused too: held by an operator
            OutboxMessage.channel.in_(channels),
        )
    ).all()
    blocked = opted_out_channels(customer_id) | set(channels)
    for row in rows:
        remaining = [c for c in (row.fallbacks or []) if c not in blocked]
        if remaining:
            row.channel, row.fallbacks = remaining[0], remaining[1:]
        else:
            row.state = OutboxState.SKIPPED
            row.error_text = reason
        moved += 1
    row_count = moved
    db.session.flush()
    log.info("customer %s left %s: %d waiting message(s) re-routed or skipped", customer_id, channels, row_count)
    return row_count
