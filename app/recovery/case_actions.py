"""What operators do to a case: send the next step now, pause, resume, a payment link to copy, mark paid elsewhere,
cancel. Callable from an admin view, a job, the CLI or the demo control page (no request context needed).

Each action locks the case row, checks first that it may be done (``rules.case_states.refusal``: a closed case
takes none; a paused one is not paused again), then writes its changes and one audit entry (target
``recovery_case``, action ``case.<name>``: the case's timeline reads them back) in one transaction, and commits. A
refused action raises :class:`CaseActionError` having written nothing.

Pausing is not a case state: a paused case keeps its state (it can still be paid, and it still covers its order for
the ingest), its scheduled messages move to the outbox state ``paused`` (the dispatcher claims ``scheduled`` rows
only, and sends nothing for a paused case it finds at prepare time), and its give-up clock stops.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from flask import current_app, has_request_context
from flask_babel import gettext

from app.audit import record
from app.clock import business_now
from app.extensions import db
from app.models import MessageEvent, OutboxMessage, RecoveryCase
from app.outbox.consent import opted_out_channels_of
from app.outbox.states import OutboxState
from app.payments.money import format_minor
from app.payments.receipts import not_a_receipt
from app.recovery.case_lifecycle import cancel_pending
from app.recovery.case_timeline import CASE_TARGET
from app.recovery.cases import move_case
from app.recovery.planning import contact_history, message_send_time
from rules.case_states import CaseAction, CaseState, refusal
from rules.contact_rules import SEND_NOW, Override
from rules.money import currency_exponent
from rules.timing import SentRecord
from rules.vocabulary import CHANNELS, Priority

#: outbox rows that have not gone yet and may still be changed
WAITING = (OutboxState.SCHEDULED, OutboxState.HELD)
#: an operator's "paid elsewhere": credited to no message (organic)
RECOVERED_ELSEWHERE = "elsewhere"


def _(text: str, **values: Any) -> str:
    """Translated when a request says which language (an admin page); English elsewhere (CLI, jobs, the demo)."""
    return gettext(text, **values) if has_request_context() else text % values


class CaseActionError(ValueError):
    """Why an action cannot be done, in words an operator can act on. Nothing was written."""


@dataclass(frozen=True)
class SendNow:
    """The next step of a case, made due now: ``send_at`` is now, or the earliest legal moment when now is in
    the customer's quiet hours or outside a legal window (``reasons`` and ``held_by`` say which)."""

    message_id: int
    channel: str
    send_at: datetime
    reasons: tuple[str, ...]
    held_by: tuple[dict[str, Any], ...]
    zone: str | None

    @property
    def at_once(self) -> bool:
        return not self.reasons


@dataclass(frozen=True)
class Rescheduled:
    message_id: int
    channel: str
    send_at: datetime | None  # None: no allowed time found (held)


def send_next_step_now(case_id: int, *, actor: str, now: datetime | None = None) -> SendNow:
    """The case's next scheduled message becomes due now, its contact rules lifting business hours, weekends,
    holidays, blackout dates and the cadence caps (``rules.contact_rules.SEND_NOW``), never quiet hours, a legal
    window, a legal cap or an opt-out. Run the dispatcher (``app.outbox.run.dispatch_due``) to send it."""
    now = now or business_now()
    case = _locked(case_id, CaseAction.SEND_NOW)
    message = db.session.scalar(
        sa.select(OutboxMessage)
        .where(OutboxMessage.case_id == case.id, OutboxMessage.state.in_(WAITING),
               OutboxMessage.channel.in_(CHANNELS))
        .order_by(OutboxMessage.scheduled_for, OutboxMessage.step_n, OutboxMessage.id).limit(1)
    )
    if message is None:
        raise _refused(_("Case #%(id)s has no message left to send.", id=case.id))
    customer = case.customer
    if customer is None:
        raise _refused(_("Case #%(id)s has no customer to write to.", id=case.id))
    blocked = opted_out_channels_of({customer.id}).get(customer.id, set())
    usable = [c for c in [message.channel, *(message.fallbacks or [])] if c not in blocked]
    if not usable:
        raise _refused(_("The customer opted out of %(channels)s: nothing can be sent.",
                          channels=", ".join([message.channel, *(message.fallbacks or [])])))
    message.channel, message.fallbacks = usable[0], usable[1:]
    message.contact_override = Override(SEND_NOW, by=actor).as_dict()
    scheduled = message_send_time(message, customer, now, _sent_to(customer.id, now))
    if scheduled.send_at is None:
        raise _refused(_("No moment allowed to contact this customer was found: %(why)s",
                          why=scheduled.note or ""))
    result = SendNow(message.id, message.channel, max(scheduled.send_at, now), tuple(scheduled.reasons),
                     _held_by(message, customer, scheduled.reasons), customer.timezone_explicit or customer.timezone)
    message.state, message.scheduled_for, message.priority = OutboxState.SCHEDULED, result.send_at, Priority.URGENT
    message.deferred_by = list(result.reasons)
    details = {"message": message.id, "channel": message.channel, "send_at": result.send_at.isoformat(),
               "reasons": list(result.reasons), "held_by": list(result.held_by)}
    db.session.add(MessageEvent(message_id=message.id, kind="send_now", provider_payload={"by": actor, **details}))
    _done(actor, CaseAction.SEND_NOW, case, details)
    return result


def pause_case(case_id: int, *, actor: str, reason: str = "", now: datetime | None = None) -> int:
    """Stop contact: the case's waiting messages are held (outbox state ``paused``) until it is resumed, and its
    give-up clock stops. Returns how many messages were held."""
    now = now or business_now()
    case = _locked(case_id, CaseAction.PAUSE)
    rows = _rows(case.id, WAITING)
    for row in rows:
        row.state = OutboxState.PAUSED
        db.session.add(MessageEvent(message_id=row.id, kind="paused", provider_payload={"by": actor}))
    case.paused_at, case.paused_by = now, actor
    _done(actor, CaseAction.PAUSE, case, {"held": len(rows), "reason": reason.strip()[:500]})
    return len(rows)


def resume_case(case_id: int, *, actor: str, now: datetime | None = None) -> list[Rescheduled]:
    """Contact again: what was held goes back on the schedule as the plan had it, later by as long as the case was
    paused, and no earlier than now; the contact rules then place each message (the same rules the planner uses).
    The give-up time moves by the pause too."""
    now = now or business_now()
    case = _locked(case_id, CaseAction.RESUME)
    paused_for = max(now - (case.paused_at or now), timedelta(0))
    sent = contact_history(case.customer_id, now) if case.customer_id else ()
    moved: list[Rescheduled] = []
    for row in sorted(_rows(case.id, (OutboxState.PAUSED,)), key=lambda r: (r.scheduled_for, r.id)):
        earliest = max(row.scheduled_for + paused_for, now)
        send_at: datetime | None = earliest
        if row.channel in CHANNELS and case.customer is not None:
            scheduled = message_send_time(row, case.customer, earliest, sent)
            send_at, row.deferred_by = scheduled.send_at, list(scheduled.reasons)
            if send_at is not None:
                sent = (*sent, SentRecord(send_at, row.channel))
        row.state, row.scheduled_for = (OutboxState.SCHEDULED, send_at) if send_at else (OutboxState.HELD, earliest)
        db.session.add(MessageEvent(message_id=row.id, kind="resumed",
                                    provider_payload={"by": actor, "at": send_at.isoformat() if send_at else None}))
        moved.append(Rescheduled(row.id, row.channel, send_at))
    if case.give_up_at is not None:
        case.give_up_at += paused_for
    case.paused_at = case.paused_by = None
    _done(actor, CaseAction.RESUME, case, {"paused_seconds": int(paused_for.total_seconds()),
                                           "rescheduled": {str(m.message_id): m.send_at for m in moved}})
    return moved


def payment_link(case_id: int, *, actor: str) -> str:
    """A payment link for the case to give the customer by hand (``app.payments.links.issue_payment_link``): its
    short form
    when there is one. Links expire and are revoked like any other (when the case closes)."""
    from app.payments.links import issue_payment_link, short_url

    case = _locked(case_id, CaseAction.PAYMENT_LINK)
    config = current_app.config
    token = issue_payment_link(case, config["SECRET_KEY"])
    url = short_url(config["PUBLIC_BASE_URL"], token, config["SECRET_KEY"])
    _done(actor, CaseAction.PAYMENT_LINK, case, {"link": url.rsplit("/", 1)[0] + "/…"})  # never the secret itself
    return url


def mark_paid_elsewhere(case_id: int, amount: str | Decimal, *, actor: str, note: str = "",
                        now: datetime | None = None) -> RecoveryCase:
    """The customer paid outside Recoup: the case closes as recovered with that amount, credited to no message
    (``recovered_via = "elsewhere"``), what is still scheduled is cancelled and its payment links revoked."""
    from app.payments.links import revoke_case_links

    now = now or business_now()
    with _no_charge_in_flight(case_id):
        case = _locked(case_id, CaseAction.PAID_ELSEWHERE)
        minor = _amount(amount, case)
        move_case(case, CaseState.RECOVERED, actor=actor, at=now,
                  reason=f"paid elsewhere: {format_minor(minor, case.currency)}"
                  + (f" ({note.strip()})" if note else ""))
        case.recovered_amount_minor = (case.recovered_amount_minor or 0) + minor
        case.recovered_via = RECOVERED_ELSEWHERE
        case.paused_at = case.paused_by = None
        cancelled = cancel_pending(case.id, "paid elsewhere")
        revoke_case_links(case.id, now=now)
        _done(actor, CaseAction.PAID_ELSEWHERE, case, {"amount_minor": minor, "currency": case.currency,
                                                       "note": note.strip()[:500], "cancelled": cancelled})
    return case


def cancel_case(case_id: int, *, actor: str, reason: str = "", now: datetime | None = None) -> int:
    """Close the case without recovery: what is still scheduled is cancelled and its payment links revoked.
    Returns how many messages were cancelled."""
    from app.payments.links import revoke_case_links

    now = now or business_now()
    with _no_charge_in_flight(case_id):
        case = _locked(case_id, CaseAction.CANCEL)
        why = reason.strip()[:200] or "cancelled by an operator"
        move_case(case, CaseState.CANCELLED, reason=why, actor=actor, at=now)
        case.paused_at = case.paused_by = None
        cancelled = cancel_pending(case.id, why)
        revoke_case_links(case.id, now=now)
        _done(actor, CaseAction.CANCEL, case, {"reason": why, "cancelled": cancelled})
    return cancelled


# -- shared --------------------------------------------------------------------------------------------------------
@contextmanager
def _no_charge_in_flight(case_id: int) -> Iterator[None]:
    """Closing a case waits for a charge of it that is under way (the payment page holds the same lock across the
    gateway call), so an approved charge and "paid elsewhere" can never both count; the charge that comes after
    finds the case closed."""
    from app.payments.charges import CaseBusy, case_lock

    try:
        with case_lock(case_id):
            yield
    except CaseBusy:
        db.session.rollback()
        raise CaseActionError(_("A payment of case #%(id)s is being processed right now: nothing was changed. "
                                "Try again in a minute.", id=case_id)) from None


def _locked(case_id: int, action: CaseAction) -> RecoveryCase:
    """The case, its row locked for this transaction (MariaDB; SQLite has one writer), if ``action`` may be done."""
    case = db.session.scalar(sa.select(RecoveryCase).where(RecoveryCase.id == case_id).with_for_update()
                             .execution_options(populate_existing=True))
    if case is None:
        raise _refused(_("There is no case #%(id)s.", id=case_id))
    why = refusal(action, case.state, case.paused_at is not None)
    if why == "closed":
        raise _refused(_("Case #%(id)s is closed (%(state)s): nothing was changed.", id=case.id, state=case.state))
    if why == "paused":
        since = case.paused_at.strftime("%Y-%m-%d %H:%M UTC") if case.paused_at else "?"
        raise _refused(_("Case #%(id)s is already paused (since %(since)s, by %(who)s): nothing was changed.",
                         id=case.id, since=since, who=case.paused_by or "?"))
    if why == "not_paused":
        raise _refused(_("Case #%(id)s is not paused.", id=case.id))
    return case


def _refused(message: str) -> CaseActionError:
    db.session.rollback()  # the lock goes, nothing is written
    return CaseActionError(message)


def _done(actor: str, action: CaseAction, case: RecoveryCase, details: dict[str, Any]) -> None:
    record(actor, f"case.{action.value}", CASE_TARGET, case.id, details)
    db.session.commit()


def _rows(case_id: int, states: tuple[OutboxState, ...]) -> list[OutboxMessage]:
    return list(db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.case_id == case_id,
                                                                  OutboxMessage.state.in_(states))
                                   .with_for_update()))


def _sent_to(customer_id: int, now: datetime) -> tuple[SentRecord, ...]:
    """What actually reached the customer lately (the legal caps count it; "send now" lifts the merchant's own).
    Receipts are no reminders: they count against no cap."""
    rows = db.session.execute(
        sa.select(OutboxMessage.sent_at, OutboxMessage.channel).where(
            OutboxMessage.customer_id == customer_id, OutboxMessage.channel.in_(CHANNELS), not_a_receipt(),
            OutboxMessage.sent_at.is_not(None), OutboxMessage.sent_at > now - timedelta(days=8))
    ).all()
    return tuple(SentRecord(at, channel) for at, channel in rows)


def _held_by(message: OutboxMessage, customer: Any, reasons: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    from app.models import PolicyVersion
    from app.recovery.planning import contact_windows
    from app.recovery.policies import compiled
    from rules.contact_rules import NO_POLICY_TIMING, held_by

    if not reasons:
        return ()
    version = db.session.get(PolicyVersion, message.policy_version_id) if message.policy_version_id else None
    timing = compiled(version).timing if version is not None else NO_POLICY_TIMING
    return tuple(h.as_dict() for h in held_by(reasons, timing, contact_windows(), country=customer.country,
                                               region=customer.region, channel=message.channel))


def _amount(raw: str | Decimal, case: RecoveryCase) -> int:
    """An amount as typed (``49.90``, ``1,249.00``) in the case's currency -> minor units; refused with the reason."""
    text = raw if isinstance(raw, Decimal) else str(raw).strip().replace(",", "")
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError):
        raise _refused(_("“%(raw)s” is not an amount: write it like 49.90.", raw=raw)) from None
    if not value.is_finite() or value <= 0:
        raise _refused(_("The amount paid must be more than zero."))
    units = value.scaleb(currency_exponent(case.currency))
    if units != units.to_integral_value():
        raise _refused(_("“%(raw)s” has more decimals than %(currency)s allows.", raw=raw, currency=case.currency))
    minor, due = int(units), case.amount_due_minor
    if minor > due:
        raise _refused(_("%(paid)s is more than the %(due)s due on this case.",
                          paid=format_minor(minor, case.currency), due=format_minor(due, case.currency)))
    return minor
