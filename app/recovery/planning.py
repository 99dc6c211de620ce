"""Planning: a new case, its facts and the active policy version become scheduled outbox rows.

The decision itself is ``rules.planner.plan`` (pure); this module gathers the facts from the database, stores the
plan on the case (``Plan.to_json``: the plan column's shape), and writes one outbox row per step, each naming the
policy version and source line behind it. A case is planned once: planning it again changes nothing (the outbox
idempotency keys see to that).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.clock import business_now
from app.extensions import db
from app.models import Customer, OptOut, OutboxMessage, PolicyVersion, RecoveryCase
from app.outbox.settings import ADDRESS_FIELD
from app.outbox.states import OutboxState
from app.payments.money import minor_to_decimal
from app.payments.receipts import not_a_receipt
from app.recovery.experiments import experiment_for, record_assignment, stopped_arms
from app.recovery.policies import active_version, compiled
from rules.case_states import CaseState
from rules.contact_rules import NO_POLICY_TIMING, Override, contact_rules_for
from rules.facts import Facts
from rules.plan import Plan
from rules.planner import plan as make_plan
from rules.timing import ContactHistory, Scheduled, SentRecord, next_send_time
from rules.vocabulary import CHANNELS, OutboxTask, Priority, StepAction

log = logging.getLogger(__name__)

#: rows that will never reach the customer: they do not count against the cadence caps
NOT_CONTACT = tuple(
    s.value for s in (OutboxState.CANCELLED, OutboxState.SKIPPED, OutboxState.FAILED, OutboxState.PAUSED)
)


def case_facts(case: RecoveryCase, now: datetime) -> Facts:
    """The facts snapshot for one case (money as decimal strings, as the Facts JSON has it; times as datetimes)."""
    tx = case.transaction
    customer: Customer | None = case.customer
    customer_facts: dict[str, Any] = {}
    sent: tuple[SentRecord, ...] = ()
    if customer is not None:
        opted_out = sorted(db.session.scalars(sa.select(OptOut.channel).where(OptOut.customer_id == customer.id)))
        customer_facts = {
            "id": str(customer.id),
            "email": customer.email,
            "phone": customer.phone_e164,
            "country": customer.country,
            "region": customer.region,
            "postal_code": customer.postal_code,
            "timezone": customer.timezone_explicit,
            "locale": customer.locale,
            "successful_payments": customer.successful_payments,
            "failed_payments": customer.failed_payments,
            "lifetime_value": str(
                minor_to_decimal(customer.lifetime_value_minor or 0, customer.lifetime_value_currency or tx.currency)
            ),
            "tags": list(customer.tags or [])
            + (["vip"] if customer.vip and "vip" not in (customer.tags or []) else []),
            "vip": bool(customer.vip),
            "opted_out": opted_out,
        }
        sent = contact_history(customer.id, now)
    return Facts(
        now=_utc(now),
        customer=customer_facts,
        transaction={
            "id": tx.gateway_transaction_id,
            "gateway": tx.gateway,
            "amount": str(minor_to_decimal(tx.amount_minor, tx.currency)),
            "currency": tx.currency,
            "decline_code": tx.decline_code,
            "merchant_advice_code": tx.merchant_advice_code,
            "product_type": tx.product_type,
            "value_band": tx.value_band,
            "failed_at": _utc(tx.failed_at),
        },
        sent=sent,
    )


def _utc(moment: datetime) -> datetime:
    """Aware UTC to the whole second: the precision of the Facts JSON, so a plan is the same either way."""
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment).astimezone(UTC).replace(microsecond=0)


def contact_history(customer_id: int, now: datetime) -> tuple[SentRecord, ...]:
    """Messages sent or already scheduled to this customer around ``now``, so caps hold across cases and channels
    (as the planner counts them). Receipts are no reminders: they count against no cap."""
    at = sa.func.coalesce(OutboxMessage.sent_at, OutboxMessage.scheduled_for)
    rows = db.session.execute(
        sa.select(OutboxMessage.channel, at).where(
            OutboxMessage.customer_id == customer_id,
            OutboxMessage.channel.in_(CHANNELS),
            not_a_receipt(),
            OutboxMessage.state.notin_(NOT_CONTACT),
            at >= now - timedelta(days=8),
        )
    ).all()
    return tuple(SentRecord(_utc(when), channel) for channel, when in rows)


def plan_cases(case_ids: list[int], *, now: datetime | None = None) -> dict[str, Any]:
    version = active_version()
    if version is None:
        log.warning("no active policy: %d case(s) wait unplanned", len(case_ids))
        return {"planned": 0, "waiting": len(case_ids), "reason": "no active policy"}
    planned = skipped = 0
    for case_id in case_ids:
        case = db.session.get(RecoveryCase, case_id)
        if case is None or case.plan is not None or case.state != CaseState.OPEN:
            skipped += 1
            continue
        try:
            plan_case(case, version, now=now or business_now())
            db.session.commit()
            planned += 1
        except IntegrityError:
            db.session.rollback()  # planned meanwhile by another worker
            skipped += 1
    return {"planned": planned, "skipped": skipped, "policy": version.policy.name, "version": version.number}


#: a new case is handed to the planner by a job; one still unplanned this long after it opened lost its job (a
#: Redis restart drops queued jobs, a worker can die between the commit and the enqueue) and is planned here
STRAGGLER_AFTER = timedelta(minutes=1)
#: how far back stragglers are looked for (a bounded range of the (state, opened_at) index, every dispatch run)
STRAGGLER_WINDOW = timedelta(days=3)


def plan_stragglers(*, limit: int = 200) -> dict[str, Any]:
    """Plan open cases whose planning job was lost: unplanned a minute after they opened (real time, like
    ``opened_at``). With no active policy nothing is planned: the cases wait, as :func:`plan_cases` says."""
    real_now = datetime.now(UTC)
    ids = list(db.session.scalars(
        sa.select(RecoveryCase.id)
        .where(RecoveryCase.state == CaseState.OPEN,
               RecoveryCase.opened_at.between(real_now - STRAGGLER_WINDOW, real_now - STRAGGLER_AFTER),
               RecoveryCase.plan.is_(None))
        .order_by(RecoveryCase.opened_at)
        .limit(limit)
    ))
    if not ids or active_version() is None:
        return {"planned": 0}
    log.warning("%d case(s) still unplanned a minute after they opened (their planning job was lost): planning "
                "them now", len(ids))
    return plan_cases(ids)


def contact_windows() -> dict[str, Any]:
    """The merchant's contact windows (admin settings): the default every policy's own statements override."""
    from app.settings import get_setting

    return dict(get_setting("contact_windows") or {})


def customer_zones(customer: Customer) -> tuple[str, ...]:
    """The zones a message must fit in: the operator's explicit zone when set (it always wins), else every
    candidate zone the ingest found."""
    if customer.timezone_explicit:
        return (customer.timezone_explicit,)
    return tuple(customer.timezone_candidates or ([customer.timezone] if customer.timezone else []))


def message_send_time(
    message: OutboxMessage, customer: Customer, earliest: datetime, sent: tuple[SentRecord, ...] = ()
) -> Scheduled:
    """When ``message`` may go, at ``earliest`` or later, by the planner's own contact rules
    (``rules.contact_rules.contact_rules_for``: its policy version's timing, the merchant's windows, the override it
    carries, the customer's place), given what the customer was sent (``sent``). Rows written without a policy get
    Recoup's shipped rules. ``send_at`` None: no allowed time (``note`` says why)."""
    version = db.session.get(PolicyVersion, message.policy_version_id) if message.policy_version_id else None
    timing = compiled(version).timing if version is not None else NO_POLICY_TIMING
    country, region = customer.country, customer.region
    rules = contact_rules_for(timing, contact_windows(), Override.from_dict(message.contact_override),
                              country=country, region=region)
    return next_send_time(earliest, customer_zones(customer), message.channel, rules, country=country, region=region,
                          history=ContactHistory(sent=sent))


def plan_case(case: RecoveryCase, version: PolicyVersion, *, now: datetime) -> Plan:
    policy = compiled(version)
    experiment = experiment_for(version, policy)
    plan = make_plan(policy, case_facts(case, now), version=version.number, contact_windows=contact_windows(),
                     stopped_arms=stopped_arms(experiment))
    record_assignment(case, plan, version, experiment, now)
    case.plan = plan.to_json()
    case.policy_version_id = version.id
    case.segment = plan.segment
    case.priority = (plan.priority or Priority.DEFAULT).value
    case.holdout = plan.holdout
    give_up = plan.give_up_delay
    case.give_up_at = case.transaction.failed_at + give_up if give_up else None
    customer = case.customer
    priority = Priority.of(case.priority).value
    # what the contact rules may lift, and the policy line that says so
    override = plan.override.as_dict() if plan.override else None
    rows = []
    for step in plan.steps:
        channel = OutboxTask.PAYMENT_RETRY if step.action is StepAction.RETRY_PAYMENT else step.channel
        if channel is None:
            continue
        address = None
        if channel in ADDRESS_FIELD and customer is not None:
            address = getattr(customer, ADDRESS_FIELD[channel])
        rows.append(
            OutboxMessage(
                case_id=case.id,
                customer_id=case.customer_id,
                step_n=step.n,
                channel=str(channel),
                fallbacks=[c.value for c in step.fallbacks],
                address=address,
                template=step.template,
                variant=step.variant,
                locale=customer.locale if customer is not None else None,
                priority=priority,
                # a step the timing core could not place (no allowed time within its horizon) is kept, not sent
                state=OutboxState.SCHEDULED if step.send_at else OutboxState.HELD,
                scheduled_for=step.send_at or now,
                deferred_by=list(step.deferred_by),
                contact_override=override if channel in ADDRESS_FIELD else None,
                policy_version_id=version.id,
                rule_line=step.rule,
                idempotency_key=f"case:{case.id}:step:{step.n}",
            )
        )
    escalation = plan.escalation
    if escalation and escalation.to:
        case.escalated_to = None
        rows.append(
            OutboxMessage(
                case_id=case.id,
                customer_id=case.customer_id,
                step_n=None,
                channel=OutboxTask.ESCALATION.value,
                fallbacks=[],
                address=escalation.to,
                priority=priority,
                state=OutboxState.SCHEDULED,
                scheduled_for=max(case.transaction.failed_at + escalation.delay, now),
                deferred_by=[],
                policy_version_id=version.id,
                rule_line=None,
                idempotency_key=f"case:{case.id}:escalate",
            )
        )
    db.session.add_all(rows)
    db.session.flush()
    return plan
