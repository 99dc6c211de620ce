"""A small, realistic world for admin tests: an active policy, recent cases planned with it, messages and their
events, a payment link and a payment, an escalation, a template, a gateway account with a secret."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from app.accounts.gateway_accounts import save_account
from app.audit import record
from app.extensions import db
from app.messages.templates_service import save_template
from app.models import EscalationTask, MessageEvent, OptOut, Payment, PaymentLink, RecoveryCase
from app.models.types import utcnow
from app.recovery.planning import plan_case
from app.recovery.policies import activate_text
from tests.builders import make_case, make_customer, make_transaction

STANDARD = (Path(__file__).resolve().parents[2] / "examples" / "policies" / "standard.policy").read_text()
GATEWAY_SECRET = "sk_live_SUPERSECRET_9f8e7d6c5b4a"
WEBHOOK_SECRET = "whsec_ANOTHERSECRET_1234abcd"


@dataclass
class World:
    case: RecoveryCase
    cases: list[RecoveryCase]
    escalation: EscalationTask
    gateway_account_id: int
    customer_id: int
    template_id: int


def build_world(n_cases: int = 6) -> World:
    version = activate_text("standard", STANDARD, actor=None, note="initial policy")
    now = utcnow()
    cases = []
    for i in range(n_cases):
        customer = make_customer(vip=(i == 0), tags=["wholesale"] if i == 1 else [])
        tx = make_transaction(customer=customer, amount_minor=[2500, 60000, 9900, 250000, 4900, 12000][i % 6],
                              failed_at=now - timedelta(days=i + 1, hours=3),
                              decline_kind="soft" if i % 3 else "hard")
        case = make_case(transaction=tx, opened_at=now - timedelta(days=i + 1, hours=3))
        plan_case(case, version, now=tx.failed_at)
        cases.append(case)
    case = next(c for c in cases if _messages(c))  # a case outside the holdout (5% of cases are not contacted)
    db.session.add(OptOut(customer_id=case.customer_id, channel="sms", source="sms_stop"))
    first = sorted((m for m in _messages(case)), key=lambda m: m.scheduled_for)[0]
    first.state, first.sent_at, first.provider_message_id = "sent", first.scheduled_for, "SM123"
    db.session.add_all([MessageEvent(message_id=first.id, kind="sent", occurred_at=first.scheduled_for),
                        MessageEvent(message_id=first.id, kind="delivered",
                                     occurred_at=first.scheduled_for + timedelta(seconds=5))])
    link = PaymentLink(case_id=case.id, token_hash="a" * 64, expires_at=now + timedelta(days=30),
                       open_count=2, first_opened_at=first.scheduled_for + timedelta(minutes=3),
                       last_opened_at=first.scheduled_for + timedelta(minutes=9))
    db.session.add(link)
    db.session.flush()
    db.session.add(Payment(case_id=case.id, link_id=link.id, message_id=first.id, order_id="ord-1", method="vault",
                           initiator="customer", amount_minor=case.amount_due_minor, currency=case.currency,
                           state="declined", response_text="Insufficient funds", created_at=now))
    task = EscalationTask(case_id=next(c for c in cases if c is not case).id, team="collections", state="open")
    db.session.add(task)
    account = save_account("nmi-main", "nmi", credentials={"security_key": GATEWAY_SECRET,
                                                            "webhook_signing_key": WEBHOOK_SECRET},
                           api_url="https://secure.nmi.com/api", actor="setup")
    record("setup", "world.built", None, None, {"cases": n_cases})
    db.session.commit()
    template = save_template("payment_failed", "email", "en", subject="{{ brand }}: payment problem",
                             body="Hi {{ customer.first_name }}, your {{ amount }} payment failed. {{ payment_link }}",
                             four_eyes=False)
    for name, channel in (("vip_personal", "whatsapp"), ("vip_followup", "email"), ("reminder_short", "sms"),
                          ("final_notice", "email")):
        save_template(name, channel, "en", subject="{{ brand }}: about your payment" if channel == "email" else None,
                      body="Hi {{ customer.first_name }}, please pay {{ amount }}: {{ payment_link }}", four_eyes=False)
    return World(case=case, cases=cases, escalation=task, gateway_account_id=account.id,
                 customer_id=case.customer_id, template_id=template.template_id)


def _messages(case: RecoveryCase):  # type: ignore[no-untyped-def]
    from app.models import OutboxMessage

    return db.session.query(OutboxMessage).filter(OutboxMessage.case_id == case.id,
                                                  OutboxMessage.channel != "escalation").all()
