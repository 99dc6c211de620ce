"""What a case and a sent message contribute to the analytics, computed from the raw rows alone (so computing it
twice, or after a duplicated or late event, gives the same answer). A "message" is every touch that went: an
email, SMS or WhatsApp message, and a payment retry (it can win the payment too); never a team's escalation.

A **case** counts once, at the hour it opened: failed (its first failure's amount due), recovered through Recoup,
recovered elsewhere (an operator marked it paid outside Recoup), or still open. A **sent message** counts at the hour
it went, with the customer's local hour and weekday then: delivered (a delivered or read status), read (read, or an
email's open pixel), clicked, opted out (an unsubscribe from it, or an opt-out of its channel within
:data:`OPT_OUT_WINDOW` of it), and paid when it is the touch its case's recovery is credited to.

**Attribution** (last touch, as the dunning tools count it): a recovery through Recoup is credited to the last touch
sent within the merchant's attribution window (setting ``attribution_window_hours``, default 72) before the payment;
with none in the window it is *organic*. The message whose link or retry took the payment counts as sent by then (a
retry's row is stamped sent a moment after the charge it made). *Any touch* credits, per channel, the last message
of that channel in the window: a recovery counts once for each channel that took part.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from app.extensions import db
from app.models import ConsentEvent, Customer, MessageEvent, OutboxMessage, Payment, RecoveryCase, Transaction
from app.models.analytics import (
    CASE_DIMENSIONS,
    CASE_MEASURES,
    MESSAGE_DIMENSIONS,
    MESSAGE_MEASURES,
    TIME_TO_RECOVER,
)
from app.models.types import as_utc
from rules.case_states import ACTIVE, CaseState
from rules.vocabulary import OutboxTask

#: an opt-out of a channel this soon after a message on it is counted against that message
OPT_OUT_WINDOW = timedelta(hours=72)
#: the attribution window when the merchant has not set one (setting ``attribution_window_hours``)
DEFAULT_ATTRIBUTION_HOURS = 72
#: a first touch "won" when its case was recovered through Recoup this soon after it (the best-times report)
WIN_WINDOW = timedelta(hours=72)
DELIVERED_KINDS = ("delivered", "read")
READ_KINDS = ("read", "opened")
CLICKED_KINDS = ("clicked",)
UNSUBSCRIBED_KINDS = ("unsubscribed",)
_EVENT_KINDS = (*DELIVERED_KINDS, "opened", *CLICKED_KINDS, *UNSUBSCRIBED_KINDS)


@dataclass(frozen=True)
class Fact:
    """One case's or message's contribution: its hour, its dimensions and its measures (in the orders of
    app.models.analytics)."""

    key: int
    bucket: datetime
    dims: tuple[Any, ...]
    measures: tuple[int, ...]

    @cached_property
    def dims_key(self) -> str:
        return dims_key(self.dims)


def dims_key(dims: tuple[Any, ...]) -> str:
    """A short stable key for a tuple of dimension values (NULL never equals NULL in a unique index)."""
    return hashlib.sha1(json.dumps(list(dims), default=str).encode(), usedforsecurity=False).hexdigest()


def hour_of(moment: datetime) -> datetime:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _first_time(is_first: bool | None) -> str | None:
    return None if is_first is None else ("first" if is_first else "repeat")


def language_of(locale: str | None) -> str | None:
    """The language of a customer's locale ("es" of "es-MX" or "es_ES"), lower case; None when unknown."""
    if not locale:
        return None
    return locale.replace("_", "-").split("-")[0].strip().lower() or None


def _short(value: Any) -> Any:
    return value[:32] if isinstance(value, str) else value


def attribution_window() -> timedelta:
    """How long before a payment a touch still earns the credit (the merchant's setting)."""
    from app.settings import get_setting

    hours = get_setting("attribution_window_hours")
    return timedelta(hours=int(hours or DEFAULT_ATTRIBUTION_HOURS))


@dataclass(frozen=True)
class _Credit:
    """Who a recovery through Recoup is credited to: the last touch in the window (None: organic), and per channel
    the last touch of that channel in the window (any touch)."""

    last: int | None
    any_touch: frozenset[int]


def credits(case_ids: Iterable[int], window: timedelta) -> dict[int, _Credit]:
    """The credit of each case in ``case_ids`` that Recoup recovered (one paid elsewhere or unpaid has none)."""
    ids = sorted(set(case_ids))
    found: dict[int, _Credit] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        paid = {cid: (as_utc(closed), credited) for cid, closed, credited in db.session.execute(
            sa.select(RecoveryCase.id, RecoveryCase.closed_at, RecoveryCase.recovered_message_id)
            .where(RecoveryCase.id.in_(chunk), RecoveryCase.state == CaseState.RECOVERED,
                   RecoveryCase.closed_at.is_not(None),
                   sa.or_(RecoveryCase.recovered_via.is_(None), RecoveryCase.recovered_via != "elsewhere")))}
        if not paid:
            continue
        touches: dict[int, list[tuple[datetime, int, str]]] = {}
        for case_id, mid, sent_at, channel in db.session.execute(
            sa.select(OutboxMessage.case_id, OutboxMessage.id, OutboxMessage.sent_at, OutboxMessage.channel)
            .where(OutboxMessage.case_id.in_(list(paid)), OutboxMessage.sent_at.is_not(None),
                   OutboxMessage.channel != OutboxTask.ESCALATION)
        ):
            paid_at, credited = paid[case_id]
            at = min(as_utc(sent_at), paid_at) if mid == credited else as_utc(sent_at)
            if paid_at - window <= at <= paid_at:
                touches.setdefault(case_id, []).append((at, mid, channel))
        for case_id in paid:
            inside = sorted(touches.get(case_id, ()))
            last_of_channel = {channel: mid for _, mid, channel in inside}
            found[case_id] = _Credit(inside[-1][1] if inside else None, frozenset(last_of_channel.values()))
    return found


def _paid_with(case_ids: list[int]) -> dict[int, str]:
    """{case id: the method of its latest approved payment}."""
    methods: dict[int, str] = {}
    for case_id, method in db.session.execute(
        sa.select(Payment.case_id, Payment.method).where(Payment.case_id.in_(case_ids), Payment.state == "approved")
        .order_by(Payment.case_id, Payment.completed_at, Payment.id)
    ):
        methods[case_id] = method
    return methods


def case_facts(case_ids: Iterable[int], window: timedelta | None = None) -> dict[int, Fact]:
    """The facts of the cases ``case_ids`` that exist (a case that is gone has none)."""
    ids = list(case_ids)
    if not ids:
        return {}
    rows = db.session.execute(
        sa.select(RecoveryCase.id, RecoveryCase.opened_at, RecoveryCase.state, RecoveryCase.amount_due_minor,
                  RecoveryCase.currency, RecoveryCase.policy_version_id, RecoveryCase.holdout,
                  RecoveryCase.recovered_amount_minor, RecoveryCase.recovered_via, Transaction.gateway,
                  Transaction.decline_reason, Transaction.decline_code, Transaction.value_band,
                  Transaction.is_first_payment, Transaction.product_type, Customer.vip, RecoveryCase.closed_at,
                  Customer.locale)
        .join(Transaction, Transaction.id == RecoveryCase.transaction_id)
        .outerjoin(Customer, Customer.id == RecoveryCase.customer_id)
        .where(RecoveryCase.id.in_(ids))
    ).all()
    credit = credits([r[0] for r in rows if r[2] == CaseState.RECOVERED], window or attribution_window())
    methods = _paid_with([r[0] for r in rows if r[2] == CaseState.RECOVERED])
    facts = {}
    for (cid, opened_at, state, due, currency, version, holdout, recovered, via, gateway, reason, code, band,
         first, product, vip, closed_at, locale) in rows:
        paid = state == CaseState.RECOVERED
        elsewhere = paid and via == "elsewhere"
        dims = dict(gateway=gateway, currency=currency, decline_reason=reason, decline_code=code, value_band=band,
                    first_time=_first_time(first), product_type=product, vip=bool(vip), language=language_of(locale),
                    policy_version_id=version, holdout=bool(holdout),
                    paid_with=("elsewhere" if elsewhere else methods.get(cid)) if paid else None)
        amount = int(recovered if recovered is not None else due) if paid else 0
        organic = paid and not elsewhere and (cid not in credit or credit[cid].last is None)
        measures = dict(failed_n=1, failed_minor=int(due), recovered_n=int(paid and not elsewhere),
                        recovered_minor=0 if elsewhere else amount, elsewhere_n=int(elsewhere),
                        elsewhere_minor=amount if elsewhere else 0, open_n=int(state in ACTIVE),
                        organic_n=int(organic), organic_minor=amount if organic else 0,
                        **time_to_recover(opened_at, closed_at if paid and not elsewhere else None))
        facts[cid] = Fact(cid, hour_of(opened_at), tuple(_short(dims[d]) for d in CASE_DIMENSIONS),
                          tuple(measures[m] for m in CASE_MEASURES))
    return facts


def time_to_recover(opened_at: datetime, paid_at: datetime | None) -> dict[str, int]:
    """The histogram columns of one case: 1 in the bucket its recovery time falls in (none when not recovered)."""
    counts = {name: 0 for name, _ in TIME_TO_RECOVER}
    if paid_at is not None:
        hours = max((as_utc(paid_at) - as_utc(opened_at)).total_seconds(), 0) / 3600
        name = next(n for n, limit in TIME_TO_RECOVER if limit is None or hours <= limit)
        counts[name] = 1
    return counts


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def message_facts(message_ids: Iterable[int], window: timedelta | None = None) -> dict[int, Fact]:
    """The facts of the messages ``message_ids`` that were sent (one never sent contributes nothing)."""
    ids = list(message_ids)
    if not ids:
        return {}
    rows = db.session.execute(
        sa.select(OutboxMessage.id, OutboxMessage.sent_at, OutboxMessage.channel, OutboxMessage.template,
                  OutboxMessage.variant, OutboxMessage.policy_version_id, OutboxMessage.customer_id,
                  Customer.timezone_explicit, Customer.timezone, Customer.vip, RecoveryCase.currency,
                  RecoveryCase.state, RecoveryCase.recovered_message_id, RecoveryCase.recovered_via,
                  RecoveryCase.recovered_amount_minor, RecoveryCase.amount_due_minor, Transaction.gateway,
                  Transaction.decline_reason, Transaction.value_band, Transaction.is_first_payment,
                  Transaction.product_type, OutboxMessage.case_id, RecoveryCase.closed_at, Customer.locale)
        .outerjoin(Customer, Customer.id == OutboxMessage.customer_id)
        .outerjoin(RecoveryCase, RecoveryCase.id == OutboxMessage.case_id)
        .outerjoin(Transaction, Transaction.id == RecoveryCase.transaction_id)
        .where(OutboxMessage.id.in_(ids), OutboxMessage.sent_at.is_not(None),
               OutboxMessage.channel != OutboxTask.ESCALATION)  # a team's task touches no customer
    ).all()
    if not rows:
        return {}
    sent = [r[0] for r in rows]
    kinds: dict[int, set[str]] = {}
    for mid, kind in db.session.execute(
        sa.select(MessageEvent.message_id, MessageEvent.kind).distinct()
        .where(MessageEvent.message_id.in_(sent), MessageEvent.kind.in_(_EVENT_KINDS))
    ):
        kinds.setdefault(mid, set()).add(kind)
    firsts = _first_touches({r[21] for r in rows if r[21] is not None})
    credit = credits({r[21] for r in rows if r[21] is not None and r[11] == CaseState.RECOVERED},
                     window or attribution_window())
    customers = {r[6] for r in rows if r[6] is not None}
    opt_outs: dict[tuple[int, str], list[datetime]] = {}
    if customers:
        for customer_id, channel, at in db.session.execute(
            sa.select(ConsentEvent.customer_id, ConsentEvent.channel, ConsentEvent.at)
            .where(ConsentEvent.customer_id.in_(customers), ConsentEvent.action == "opt_out")
        ):
            opt_outs.setdefault((customer_id, channel), []).append(as_utc(at))
    facts = {}
    for (mid, sent_at, channel, template, variant, version, customer_id, tz_explicit, tz, vip, currency, state,
         _credited, via, recovered, due, gateway, reason, band, first, product, case_id, closed_at, locale) in rows:
        sent_at = as_utc(sent_at)
        local = sent_at.astimezone(_zone(tz_explicit or tz))
        seen = kinds.get(mid, set())
        opted = bool(seen & set(UNSUBSCRIBED_KINDS)) or any(
            sent_at <= at <= sent_at + OPT_OUT_WINDOW for at in opt_outs.get((customer_id, channel), ()))
        won_by = credit.get(case_id)
        paid = won_by is not None and won_by.last == mid
        touched = won_by is not None and mid in won_by.any_touch
        amount = int(recovered if recovered is not None else due or 0)
        first_touch = case_id is not None and firsts.get(case_id) == mid
        won = (first_touch and state == CaseState.RECOVERED and via != "elsewhere" and closed_at is not None
               and as_utc(closed_at) <= sent_at + WIN_WINDOW)
        dims = dict(channel=channel, template=template, variant=variant, policy_version_id=version,
                    local_hour=local.hour, weekday=local.weekday(), gateway=gateway, currency=currency,
                    decline_reason=reason, value_band=band, first_time=_first_time(first), product_type=product,
                    vip=bool(vip), language=language_of(locale))
        measures = dict(sent_n=1, delivered_n=int(bool(seen & set(DELIVERED_KINDS))),
                        read_n=int(bool(seen & set(READ_KINDS))), clicked_n=int(bool(seen & set(CLICKED_KINDS))),
                        optout_n=int(opted), paid_n=int(paid), paid_minor=amount if paid else 0,
                        any_n=int(touched), any_minor=amount if touched else 0, first_n=int(first_touch),
                        won72_n=int(won))
        facts[mid] = Fact(mid, hour_of(sent_at), tuple(_short(dims[d]) for d in MESSAGE_DIMENSIONS),
                          tuple(measures[m] for m in MESSAGE_MEASURES))
    return facts


def _first_touches(case_ids: set[int]) -> dict[int, int]:
    """{case id: the id of its first sent message} (the earliest; the lower id when two went at once)."""
    firsts: dict[int, tuple[datetime, int]] = {}
    ids = sorted(case_ids)
    for start in range(0, len(ids), 500):
        for case_id, mid, sent_at in db.session.execute(
            sa.select(OutboxMessage.case_id, OutboxMessage.id, OutboxMessage.sent_at)
            .where(OutboxMessage.case_id.in_(ids[start:start + 500]), OutboxMessage.sent_at.is_not(None),
                   OutboxMessage.channel != OutboxTask.ESCALATION)
        ):
            key = (as_utc(sent_at), mid)
            if case_id not in firsts or key < firsts[case_id]:
                firsts[case_id] = key
    return {case_id: mid for case_id, (_, mid) in firsts.items()}

