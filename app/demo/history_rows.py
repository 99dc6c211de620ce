"""The rows the demo's history leaves (app.demo.history_sim plays it), per table, shaped as the code that writes
them in production shapes them, with the ids they will have. No database: app.demo.history inserts them."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from app.demo.history_sim import Case, Customer, Row, Setup, Timeline
from app.payments.receipts import RECEIPT_TEMPLATE
from rules.declines import classify_decline
from rules.vocabulary import CHANNELS, OutboxTask, Priority


@dataclass
class Tables:
    """The rows to insert, per table, in an order the foreign keys accept."""

    customers: list[dict[str, Any]] = field(default_factory=list)
    transactions: list[dict[str, Any]] = field(default_factory=list)
    recovery_cases: list[dict[str, Any]] = field(default_factory=list)
    case_transitions: list[dict[str, Any]] = field(default_factory=list)
    outbox_messages: list[dict[str, Any]] = field(default_factory=list)
    message_events: list[dict[str, Any]] = field(default_factory=list)
    payment_links: list[dict[str, Any]] = field(default_factory=list)
    payments: list[dict[str, Any]] = field(default_factory=list)
    opt_outs: list[dict[str, Any]] = field(default_factory=list)
    consent_events: list[dict[str, Any]] = field(default_factory=list)
    escalation_tasks: list[dict[str, Any]] = field(default_factory=list)
    sales: list[dict[str, Any]] = field(default_factory=list)  # approved charges booked as sales (transactions)
    credited: list[dict[str, Any]] = field(default_factory=list)  # recovery_cases.recovered_message_id, after
    experiment_assignments: list[dict[str, Any]] = field(default_factory=list)



def tables(timeline: Timeline) -> Tables:
    """Every row the history leaves, per table (``recovered_message_id`` apart: it points at a message)."""
    setup, out = timeline.setup, Tables()
    for c in sorted(timeline.customers.values(), key=lambda c: c.id):
        out.customers.append(customer_row(setup, c))
    for case in timeline.cases:
        f, customer = case.failure, case.customer
        decline = classify_decline(f.decline_code, None, gateway="nmi", text=f.decline_text)
        out.transactions.append({
            "id": case.transaction_id, "gateway": "nmi", "gateway_account_id": setup.account_id,
            "gateway_transaction_id": f.gateway_transaction_id, "customer_id": customer.id, "status": "failed",
            "amount_minor": f.amount_minor, "currency": f.currency, "value_band": case.band,
            "decline_code": f.decline_code, "decline_text": f.decline_text, "merchant_advice_code": None,
            "decline_reason": decline.reason.value, "decline_kind": decline.kind.value,
            "product_type": case.product_type, "order_id": f.order_id, "order_description": f.description,
            "card_masked": f.person.card_masked, "joined_case_id": None, "is_first_payment": case.first_time,
            "failed_at": f.failed_at, "modified_at": f.failed_at, "raw": f.raw, "created_at": case.opened_at,
        })
        plan = case.plan
        give_up = plan.give_up_delay
        out.recovery_cases.append({
            "id": case.id, "transaction_id": case.transaction_id, "customer_id": customer.id,
            "state": case.state, "amount_due_minor": f.amount_minor, "currency": f.currency,
            "policy_version_id": setup.version_id, "segment": plan.segment,
            "priority": (plan.priority or Priority.DEFAULT).value, "holdout": plan.holdout,
            "plan": plan.to_json(), "escalated_to": case.escalated_to,
            "give_up_at": f.failed_at + give_up if give_up else None, "opened_at": case.opened_at,
            "closed_at": case.closed_at, "recovered_amount_minor": case.recovered_amount,
            "recovered_via": case.recovered_via, "paused_at": None, "paused_by": None,
            "recovered_message_id": None, "updated_at": case.updated_at or case.opened_at,
        })
        if case.recovered_message_id is not None:
            out.credited.append({"b_case": case.id, "b_message": case.recovered_message_id,
                                    "b_updated": case.updated_at or case.opened_at})
        for row in sorted(case.rows, key=lambda r: r.id):
            out.outbox_messages.append(outbox_row(setup, case, row))
            for at, kind, payload in sorted(row.events, key=lambda e: e[0]):
                out.message_events.append({"message_id": row.id, "kind": kind, "occurred_at": at,
                                           "recorded_at": at, "provider_payload": payload})
        out.payment_links.extend(case.links)
        out.escalation_tasks.extend(case.tasks)
        assignment = assignment_row(setup, case)
        if assignment is not None:
            out.experiment_assignments.append(assignment)
    out.case_transitions = timeline.transitions
    out.payments = timeline.payments
    out.sales = timeline.sales
    out.opt_outs = timeline.opt_outs
    out.consent_events = timeline.consent
    return out

def assignment_row(setup: Setup, case: Case) -> dict[str, Any] | None:
    """The arm the planner drew for the case, as app.recovery.experiments.record_assignment keeps it (nothing for a
    case sent to control because its arm is stopped), exposed at its first message sent as stamp_exposures reads
    it (the earliest ``sent_at`` of the case's rows on a customer channel)."""
    drawn = case.plan.experiment
    if setup.experiment_id is None or drawn is None or drawn.reassigned_from:
        return None
    sent = [row.sent_at for row in case.rows if row.sent_at is not None and row.channel in CHANNELS]
    return {"experiment_id": setup.experiment_id, "case_id": case.id, "customer_id": case.customer.id,
            "unit": drawn.unit[:80], "arm": drawn.arm, "policy_version_id": setup.version_id,
            "assigned_at": case.opened_at, "exposed_at": min(sent, default=None)}


def customer_row(setup: Setup, c: Customer) -> dict[str, Any]:
    p = c.person
    return {
        "id": c.id, "gateway_account_id": setup.account_id, "gateway_customer_id": p.vault_id,
        "vault_id": p.vault_id, "first_name": p.first_name, "last_name": p.last_name, "company": None,
        "email": p.email, "phone_e164": p.phone_e164, "phone_raw": p.phone_raw, "country": p.country,
        "region": p.region or None, "city": p.city, "postal_code": p.postal_code or None,
        "timezone": p.zones[0] if p.zones else None, "timezone_candidates": list(p.zones),
        "timezone_source": p.zone_source, "timezone_confidence": Decimal(str(round(p.zone_confidence, 3))),
        "timezone_explicit": None, "locale": c.locale, "locale_source": c.locale_source,
        "tags": [], "vip": p.vip, "successful_payments": c.successful, "failed_payments": c.failed,
        "lifetime_value_minor": c.value_minor, "lifetime_value_currency": p.currency,
        "card_masked": c.card_masked, "card_expiry": c.card_expiry, "first_seen_at": c.first_seen,
        "last_seen_at": c.last_seen, "created_at": c.created_at, "updated_at": c.updated_at or c.last_seen,
    }

def outbox_row(setup: Setup, case: Case, row: Row) -> dict[str, Any]:
    last = max((at for at, _k, _p in row.events), default=row.created_at)
    person_channel = row.channel in CHANNELS
    return {
        "id": row.id, "case_id": case.id, "customer_id": case.customer.id, "step_n": row.step_n,
        "channel": row.channel, "fallbacks": row.fallbacks, "address": row.address, "template": row.template,
        "template_version_id": None, "variant": row.variant,
        "locale": case.customer.locale if row.channel != OutboxTask.ESCALATION else None,
        "priority": row.priority, "state": row.state, "scheduled_for": row.scheduled_for,
        "deferred_by": row.deferred_by, "contact_override": row.override if person_channel else None,
        "claimed_at": row.claimed_at, "claimed_by": row.claimed_by, "attempts": row.attempts,
        "sent_at": row.sent_at, "provider_message_id": row.provider_id,
        "policy_version_id": None if row.template == RECEIPT_TEMPLATE else setup.version_id,
        "rule_line": row.rule_line, "idempotency_key": row.key, "error_code": row.error_code,
        "error_text": (row.error_text or "")[:500] or None, "created_at": row.created_at, "updated_at": last,
    }
