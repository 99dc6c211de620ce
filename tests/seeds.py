"""Bulk builders: many rows in a few statements (the crash test and the dispatch bench seed thousands)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

CHANNELS = ("email", "sms", "whatsapp")
PRIORITIES = ("low", "default", "default", "high", "urgent")


def seed_due_messages(
    n: int, *, channels: tuple[str, ...] = CHANNELS, due: datetime | None = None, receipt_every: int = 0
) -> list[int]:
    """``n`` due outbox rows, one customer / transaction / case each, channels in turn; returns their ids.
    With ``receipt_every`` k, every k-th row is instead the receipt of an approved payment of its (recovered) case,
    as app.payments.receipts queues it. Needs an app context. No policy version: the contact windows are not
    re-checked (the
    bench runs at any hour)."""
    from app.extensions import db
    from app.models import Customer, GatewayAccount, OutboxMessage, Payment, RecoveryCase, Transaction
    from app.payments.receipts import RECEIPT_TEMPLATE, receipt_key

    due = due or datetime.now(UTC) - timedelta(minutes=1)
    tag = secrets.token_hex(3)
    account = GatewayAccount(name=f"bench-{tag}", gateway="nmi")
    db.session.add(account)
    db.session.flush()

    def next_id(model: Any) -> int:
        return int(db.session.scalar(sa.select(sa.func.coalesce(sa.func.max(model.id), 0))) or 0) + 1

    c0, t0, k0, m0 = next_id(Customer), next_id(Transaction), next_id(RecoveryCase), next_id(OutboxMessage)
    p0 = next_id(Payment)
    customers, transactions, cases, messages, payments = [], [], [], [], []
    for i in range(n):
        phone = f"+1305{(c0 + i) % 10_000_000:07d}"
        customers.append({
            "id": c0 + i, "first_name": "Ana", "last_name": f"Bench {i}", "email": f"bench{c0 + i}@example.com",
            "phone_e164": phone, "country": "US", "region": "FL", "locale": "en_US", "timezone": "America/New_York",
            "timezone_candidates": ["America/New_York"], "tags": [],
        })
        transactions.append({
            "id": t0 + i, "gateway": "nmi", "gateway_account_id": account.id, "customer_id": c0 + i,
            "gateway_transaction_id": f"bench-{tag}-{i}", "amount_minor": 1000 + i % 9000, "currency": "USD",
            "decline_code": "202", "decline_reason": "insufficient_funds", "failed_at": due, "raw": {},
        })
        cases.append({
            "id": k0 + i, "transaction_id": t0 + i, "customer_id": c0 + i, "amount_due_minor": 1000 + i % 9000,
            "currency": "USD", "state": "open", "recovered_amount_minor": None,
        })
        channel = channels[i % len(channels)]
        message = {
            "id": m0 + i, "case_id": k0 + i, "customer_id": c0 + i, "step_n": 1, "channel": channel,
            "fallbacks": [], "address": phone if channel != "email" else f"bench{c0 + i}@example.com",
            "template": "payment_failed", "locale": "en_US", "priority": PRIORITIES[i % len(PRIORITIES)],
            "state": "scheduled", "scheduled_for": due, "deferred_by": [], "attempts": 0,
            "idempotency_key": f"bench:{tag}:{i}",
        }
        if receipt_every and i % receipt_every == receipt_every - 1:
            cases[-1].update(state="recovered", recovered_amount_minor=cases[-1]["amount_due_minor"])
            payments.append({
                "id": p0 + len(payments), "case_id": k0 + i, "order_id": f"rc{k0 + i}-{tag}", "method": "vault",
                "initiator": "customer", "amount_minor": cases[-1]["amount_due_minor"], "currency": "USD",
                "state": "approved", "created_at": due, "completed_at": due,
            })
            message.update(channel="email", address=f"bench{c0 + i}@example.com", template=RECEIPT_TEMPLATE,
                           step_n=None, priority="urgent", idempotency_key=receipt_key(payments[-1]["id"]))
        messages.append(message)
    for model, rows in ((Customer, customers), (Transaction, transactions), (RecoveryCase, cases),
                        (Payment, payments), (OutboxMessage, messages)):
        for start in range(0, len(rows), 2000) if rows else ():
            db.session.execute(sa.insert(model), rows[start:start + 2000])
    db.session.commit()
    return [m["id"] for m in messages]
