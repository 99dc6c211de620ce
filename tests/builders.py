"""Builders that make whole objects in one call, with overrides: ``make_customer(email=...)``."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from app.extensions import db
from app.models import Customer, GatewayAccount, OutboxMessage, RecoveryCase, Transaction

_seq = itertools.count(1)


def make_gateway_account(**overrides: Any) -> GatewayAccount:
    n = next(_seq)
    account = GatewayAccount(**{"name": f"nmi-{n}", "gateway": "nmi", **overrides})
    db.session.add(account)
    db.session.flush()
    return account


def make_customer(**overrides: Any) -> Customer:
    n = next(_seq)
    values: dict[str, Any] = {
        "first_name": "Ana",
        "last_name": f"Pérez {n}",
        "email": f"ana{n}@example.com",
        "phone_e164": "+13055550142",
        "country": "US",
        "region": "FL",
        "postal_code": "33101",
        "locale": "en_US",
        "timezone": "America/New_York",
        "timezone_candidates": ["America/New_York"],
        "timezone_source": "postal",
    }
    values.update(overrides)
    customer = Customer(**values)
    db.session.add(customer)
    db.session.flush()
    return customer


def make_transaction(**overrides: Any) -> Transaction:
    n = next(_seq)
    if "gateway_account_id" not in overrides:
        overrides["gateway_account_id"] = make_gateway_account().id
    if "customer_id" not in overrides and "customer" not in overrides:
        overrides["customer"] = make_customer()
    values: dict[str, Any] = {
        "gateway": "nmi",
        "gateway_transaction_id": f"{9_000_000 + n}",
        "amount_minor": 24900,
        "currency": "USD",
        "decline_code": "202",
        "decline_text": "Insufficient funds",
        "decline_reason": "insufficient_funds",
        "decline_kind": "soft",
        "failed_at": datetime(2026, 11, 27, 1, 25, tzinfo=UTC),
    }
    values.update(overrides)
    tx = Transaction(**values)
    db.session.add(tx)
    db.session.flush()
    return tx


def make_case(**overrides: Any) -> RecoveryCase:
    tx = overrides.pop("transaction", None) or make_transaction()
    values: dict[str, Any] = {
        "transaction_id": tx.id,
        "customer_id": tx.customer_id,
        "amount_due_minor": tx.amount_minor,
        "currency": tx.currency,
        "state": "open",
    }
    values.update(overrides)
    case = RecoveryCase(**values)
    db.session.add(case)
    db.session.flush()
    return case


def make_message(**overrides: Any) -> OutboxMessage:
    case = overrides.pop("case", None) or make_case()
    n = next(_seq)
    values: dict[str, Any] = {
        "case_id": case.id,
        "customer_id": case.customer_id,
        "step_n": 1,
        "channel": "email",
        "address": "ana@example.com",
        "template": "payment_failed",
        "state": "scheduled",
        "scheduled_for": datetime(2026, 11, 27, 14, 0, tzinfo=UTC),
        "idempotency_key": f"case:{case.id}:step:{n}",
    }
    values.update(overrides)
    message = OutboxMessage(**values)
    db.session.add(message)
    db.session.flush()
    return message
