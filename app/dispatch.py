"""The outbox dispatcher: claim due messages atomically, check they may still go, render, send, record.

States of an outbox row::

    scheduled --claim--> claimed --about to call the provider--> sending --> sent | failed | unknown
        ^                   |                                       |
        +--- stale claim ---+   (a worker died before sending:     +--- a worker died mid-send: unknown, never
             (nothing was sent, safe to retry)                          re-sent blindly; reconciled by reference)

    and scheduled -> cancelled (case closed) | skipped (no channel left) | scheduled later (deferred at send time)

A claim is a conditional UPDATE (``state='scheduled'`` → ``claimed`` with a batch token), so two workers never
claim one row, on MariaDB and on SQLite alike. Each step's channel order is a fallback sequence: a synchronous
failure (opted out, invalid address, permanent provider error) moves on to the next channel at once.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app

from app.cases import move_case
from app.channels.base import Channel, OutboundMessage, SendResult
from app.consent import opted_out_channels
from app.default_templates import default_template
from app.extensions import db
from app.links import issue_payment_link, tracking_token
from app.models import Customer, MessageEvent, MessageTemplate, OutboxMessage, RecoveryCase
from app.models.types import utcnow
from app.senders import reference_for, senders_for
from app.templating import MessageTemplate as TemplateSource
from app.templating import TemplateContext, render

log = logging.getLogger(__name__)

PERSON_CHANNELS = ("email", "sms", "whatsapp")
ADDRESS_FIELD = {"email": "email", "sms": "phone_e164", "whatsapp": "phone_e164"}
OPEN_CASE_STATES = ("open", "contacting", "escalated")
PRIORITY_ORDER = {"urgent": 0, "high": 1, "default": 2, "low": 3}
STALE_CLAIM = timedelta(minutes=5)
RETRY_BACKOFF = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2))
MAX_ATTEMPTS = 6


@dataclass
class DispatchReport:
    claimed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    reclaimed: int = 0

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {"claimed": self.claimed, "reclaimed": self.reclaimed, **self.outcomes}


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def dispatch_due(*, now: datetime | None = None, limit: int = 200, concurrency: int = 8) -> dict[str, Any]:
    from app.case_lifecycle import expire_due_cases, run_due_escalations

    now = now or utcnow()
    report = DispatchReport()
    expired = expire_due_cases(now)
    if expired:
        report.outcomes["expired_cases"] = expired
    escalated = run_due_escalations(now)
    if escalated:
        report.outcomes["escalated"] = escalated
    report.reclaimed = reclaim_stale(now)
    ids = claim_due(now, limit)
    report.claimed = len(ids)
    if not ids:
        return report.as_dict()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    db.session.remove()  # each sending thread has its own session; this one holds no rows open
    if concurrency <= 1 or len(ids) == 1:
        outcomes = [_send_in_context(app, mid, now) for mid in ids]
    else:
        with ThreadPoolExecutor(max_workers=min(concurrency, len(ids)), thread_name_prefix="dispatch") as pool:
            outcomes = list(pool.map(lambda mid: _send_in_context(app, mid, now), ids))
    for outcome in outcomes:
        report.count(outcome)
    return report.as_dict()


def claim_due(now: datetime, limit: int) -> list[int]:
    """Claim up to ``limit`` due messages, most urgent first. Conditional update: a row is claimed once."""
    priority = sa.case(PRIORITY_ORDER, value=OutboxMessage.priority, else_=2)
    candidates = db.session.scalars(
        sa.select(OutboxMessage.id)
        .where(
            OutboxMessage.state == "scheduled",
            OutboxMessage.scheduled_for <= now,
            OutboxMessage.channel.in_(PERSON_CHANNELS),
        )
        .order_by(priority, OutboxMessage.scheduled_for, OutboxMessage.id)
        .limit(limit)
    ).all()
    if not candidates:
        db.session.rollback()
        return []
    token = f"{worker_name()}:{uuid.uuid4().hex[:8]}"[:64]
    db.session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id.in_(candidates), OutboxMessage.state == "scheduled")
        .values(state="claimed", claimed_by=token, claimed_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return list(
        db.session.scalars(
            sa.select(OutboxMessage.id)
            .where(OutboxMessage.claimed_by == token, OutboxMessage.state == "claimed")
            .order_by(OutboxMessage.id)
        )
    )


def reclaim_stale(now: datetime) -> int:
    """Claims whose worker died before sending go back to the queue; a death mid-send becomes ``unknown``."""
    cutoff = now - STALE_CLAIM
    back = (
        db.session.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.state == "claimed", OutboxMessage.claimed_at < cutoff)
            .values(state="scheduled", claimed_by=None)
            .execution_options(synchronize_session=False)
        ).rowcount
        or 0
    )
    stuck = db.session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.state == "sending", OutboxMessage.claimed_at < cutoff)
    ).all()
    for message in stuck:
        message.state = "unknown"
        _event(message, "unknown", {"why": "worker stopped while sending; not re-sent, awaiting reconciliation"})
    db.session.commit()
    return int(back) + len(stuck)


def _send_in_context(app: Flask, message_id: int, now: datetime) -> str:
    with app.app_context():
        try:
            return send_claimed(message_id, now)
        except Exception:
            log.exception("dispatch of message %s failed unexpectedly", message_id)
            db.session.rollback()
            message = db.session.get(OutboxMessage, message_id)
            if message is not None and message.state == "claimed":
                message.state = "failed"
                message.error_text = "internal error while preparing the message"
                _event(message, "failed", {"error": "internal error"})
                db.session.commit()
            return "error"
        finally:
            db.session.remove()


def send_claimed(message_id: int, now: datetime) -> str:
    message = db.session.get(OutboxMessage, message_id)
    if message is None or message.state != "claimed":
        return "gone"
    case = db.session.get(RecoveryCase, message.case_id) if message.case_id else None
    if case is not None and case.state not in OPEN_CASE_STATES:
        message.state = "cancelled"
        _event(message, "cancelled", {"why": f"case is {case.state}"})
        db.session.commit()
        return "cancelled"
    customer = db.session.get(Customer, message.customer_id) if message.customer_id else None
    senders = senders_for(current_app._get_current_object())  # type: ignore[attr-defined]
    while True:
        channel = _next_usable_channel(message, customer, senders)
        if channel is None:
            message.state = "skipped"
            _event(message, "skipped", {"why": message.error_text or "no channel left"})
            db.session.commit()
            return "skipped"
        deferred = _deferred_until(message, customer, channel, now)
        if deferred is not None:
            message.state = "scheduled"
            message.claimed_by = None
            message.scheduled_for = deferred
            _event(message, "deferred", {"until": deferred.isoformat(), "channel": channel})
            db.session.commit()
            return "deferred"
        outbound = _compose(message, case, customer, channel)
        message.state = "sending"
        message.attempts += 1
        db.session.commit()
        result = senders[channel].send(outbound)
        outcome = _record_result(message, case, channel, result, now)
        db.session.commit()
        if outcome != "fallback":
            return outcome


def _next_usable_channel(message: OutboxMessage, customer: Customer | None, senders: dict[str, Any]) -> str | None:
    """The message's channel if it can be used, else the first usable fallback (the row moves to it)."""
    blocked = opted_out_channels(customer.id if customer else None)
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


def _deferred_until(message: OutboxMessage, customer: Customer | None, channel: str, now: datetime) -> datetime | None:
    """Check the contact windows again at send time: a late worker must not send into quiet hours."""
    from rules.planner import contact_rules
    from rules.timing import ContactHistory, next_send_time

    if customer is None or message.policy_version_id is None:
        return None
    from app.models import PolicyVersion
    from app.policies import compiled

    version = db.session.get(PolicyVersion, message.policy_version_id)
    if version is None:
        return None
    zones = tuple(customer.timezone_candidates or ([customer.timezone] if customer.timezone else []))
    if not zones:
        return None
    rules = contact_rules(compiled(version).timing)
    scheduled = next_send_time(
        now, zones, channel, rules, country=customer.country, region=customer.region, history=ContactHistory()
    )
    if scheduled.send_at is None:
        return now + timedelta(days=1)
    if scheduled.send_at > now + timedelta(seconds=60):
        return scheduled.send_at
    return None


def _template_source(name: str | None, channel: str, locale: str | None) -> TemplateSource:
    query = sa.select(MessageTemplate).where(
        MessageTemplate.name == (name or "payment_failed"), MessageTemplate.channel == channel
    )
    rows = db.session.scalars(query).all()
    language = (locale or "en").split("_")[0]
    for row in sorted(rows, key=lambda r: (r.locale != locale, r.locale.split("_")[0] != language)):
        if row.current_version is not None:
            v = row.current_version
            return TemplateSource(body=v.body, subject=v.subject, html=v.html)
    fallback = default_template(name, channel)
    if fallback is None:
        raise LookupError(f"no template {name!r} for {channel}")
    return fallback


def _compose(
    message: OutboxMessage, case: RecoveryCase | None, customer: Customer | None, channel: str
) -> OutboundMessage:
    config = current_app.config
    base = config["PUBLIC_BASE_URL"].rstrip("/")
    pay_url = base
    transaction: dict[str, Any] = {}
    offers: list[str] = []
    if case is not None:
        token = issue_payment_link(case, config["SECRET_KEY"], message_id=message.id)
        pay_url = f"{base}/pay/{token}"
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
        merchant={"name": config["MERCHANT_NAME"]},
        offers=offers,
        unsubscribe_link=unsubscribe,
        timezone=customer.timezone if customer else None,
    )
    source = _template_source(message.template, channel, message.locale)
    rendered = render(channel, source, context, locale=message.locale)
    reference = reference_for(message.id)
    if channel == "whatsapp":
        from app.channels.base import TemplateParam
        from app.channels.whatsapp import currency_param
        from app.money import minor_to_decimal

        amount = currency_param(
            minor_to_decimal(case.amount_due_minor, case.currency) if case else 0,
            case.currency if case else "USD",
            message.locale or "en_US",
        )
        params = (
            TemplateParam(text=(customer.first_name if customer else None) or "there"),
            amount,
            TemplateParam(text=pay_url),
        )
        return OutboundMessage(
            channel=Channel.WHATSAPP,
            to=message.address or "",
            reference=reference,
            text=rendered.text,
            template_name=message.template or "payment_failed",
            template_language=_wa_language(message.locale),
            template_params=params,
        )
    if channel == "sms":
        from app.channels.sms import with_reference

        callback = with_reference(f"{base}/hooks/twilio/status", reference)
        return OutboundMessage(
            channel=Channel.SMS,
            to=message.address or "",
            reference=reference,
            text=rendered.text,
            status_callback=callback,
        )
    return OutboundMessage(
        channel=Channel.EMAIL,
        to=message.address or "",
        reference=reference,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        unsubscribe_url=unsubscribe,
    )


def _wa_language(locale: str | None) -> str:
    return (locale or "en_US").split("_")[0] if locale and not locale.startswith("en") else "en_US"


def _record_result(
    message: OutboxMessage, case: RecoveryCase | None, channel: str, result: SendResult, now: datetime
) -> str:
    payload = {
        "channel": channel,
        "outcome": result.outcome,
        "error_code": result.error_code,
        "error_text": result.error_text,
        "attempts": result.attempts,
    }
    if result.accepted:
        message.state = "sent"
        message.sent_at = utcnow()
        message.provider_message_id = result.provider_message_id
        message.error_code = message.error_text = None
        _event(message, "sent", {**payload, "provider_message_id": result.provider_message_id})
        if case is not None and case.state == "open":
            move_case(case, "contacting", reason=f"{channel} message {message.id} sent")
        return "sent"
    message.error_code = (result.error_code or "")[:32] or None
    message.error_text = (result.error_text or "")[:500] or None
    if result.unknown:
        message.state = "unknown"
        _event(message, "unknown", payload)
        return "unknown"
    if result.permanent:
        _event(message, "failed", payload)
        if result.opted_out and message.customer_id:
            from app.consent import opt_out

            opt_out(message.customer_id, [channel], source="provider", detail=result.error_code)
        if message.fallbacks:
            message.channel, message.fallbacks = message.fallbacks[0], list(message.fallbacks[1:])
            message.state = "claimed"
            _event(message, "fallback", {"to": message.channel, "after": channel})
            return "fallback"
        message.state = "failed"
        return "failed"
    if result.retryable and message.attempts < MAX_ATTEMPTS:
        wait = RETRY_BACKOFF[min(message.attempts - 1, len(RETRY_BACKOFF) - 1)]
        if result.retry_after:
            wait = max(wait, timedelta(seconds=result.retry_after))
        message.state = "scheduled"
        message.claimed_by = None
        message.scheduled_for = now + wait
        _event(message, "retry", {**payload, "at": (now + wait).isoformat()})
        return "retry"
    message.state = "failed"
    _event(message, "failed", payload)
    return "failed"


def _event(
    message: OutboxMessage, kind: str, payload: dict[str, Any] | None = None, at: datetime | None = None
) -> None:
    db.session.add(
        MessageEvent(message_id=message.id, kind=kind, provider_payload=payload, occurred_at=at or datetime.now(UTC))
    )
