"""Voids and auth/capture in the sales history (issue 16, point 4), from the NMI simulator over real HTTP, on both
databases: a voided sale is no payment (also when it was fetched as one before it was voided); an authorisation
counts once, as a payment, at its capture; one never captured is no payment."""

from datetime import UTC, datetime, timedelta

import requests
import sqlalchemy as sa

from app.accounts.gateway_accounts import save_account
from app.ingest.transactions import fetch_account
from app.models import Customer, Transaction

SIGNING_KEY = "whsec-voids-captures"
NMI_SEED = 29
NMI_SIGNING_KEY = SIGNING_KEY
CLIENT = {"timeout": [1.0, 2.0], "backoff": 0.01, "max_backoff": 0.05, "max_retry_after": 0.05, "page_size": 200}
VAULT = "CV-VOIDS-1"


def nmi_account(db, sim):
    account = save_account(
        "nmi-voids", "nmi", api_url=f"{sim.url}/api",
        credentials={"security_key": sim.security_key, "webhook_signing_key": SIGNING_KEY},
        settings={"client": CLIENT},
    )
    db.session.commit()
    return account


def control(sim, path, **body):
    answer = requests.post(f"{sim.url}/_control/{path}", json=body, timeout=5)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def authorise(sim, **body):
    return control(sim, "transactions", action="auth", condition="pending", **body)


def customer(db):
    db.session.expire_all()
    return db.session.scalar(sa.select(Customer).where(Customer.vault_id == VAULT))


def status_of(db, txn_id):
    return db.session.scalar(sa.select(Transaction.status).where(Transaction.gateway_transaction_id == txn_id))


def test_a_voided_sale_is_not_a_payment(db, sim):
    earlier = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    kept = control(sim, "transactions", condition="pendingsettlement", amount="40.00", currency="USD",
                   customer_vault_id=VAULT, at=earlier.isoformat())
    later = control(sim, "transactions", condition="pendingsettlement", amount="25.00", currency="USD",
                    customer_vault_id=VAULT, at=(earlier + timedelta(minutes=5)).isoformat())
    voided_first = control(sim, "transactions", condition="pendingsettlement", amount="99.00", currency="USD",
                           customer_vault_id=VAULT, at=(earlier + timedelta(minutes=10)).isoformat())
    control(sim, f"transactions/{voided_first['transaction_id']}/void")  # voided before any fetch saw it
    account = nmi_account(db, sim)
    first = fetch_account(account.id)
    assert first.ok and first.sales.ok, (first.error, first.sales.error)
    assert first.sales.result.new_sales == 2 and first.sales.result.voided == 1
    assert status_of(db, voided_first["transaction_id"]) == "voided"
    paying = customer(db)
    assert (paying.successful_payments, paying.lifetime_value_minor) == (2, 6500)
    # the second sale is voided after it was fetched as a payment: the next fetch takes it back
    control(sim, f"transactions/{later['transaction_id']}/void")
    second = fetch_account(account.id)
    assert second.ok and second.sales.ok and second.sales.result.voided == 1, second.sales.error
    assert status_of(db, later["transaction_id"]) == "voided" and status_of(db, kept["transaction_id"]) == "approved"
    paying = customer(db)
    assert (paying.successful_payments, paying.lifetime_value_minor) == (1, 4000)
    # fetched again (the overlap): nothing changes
    again = fetch_account(account.id)
    assert again.sales.ok and again.sales.result.voided == 0
    assert customer(db).successful_payments == 1
    # a settled sale cannot be voided (a refund is what undoes it)
    control(sim, f"transactions/{kept['transaction_id']}/settle")
    refused = requests.post(f"{sim.url}/_control/transactions/{kept['transaction_id']}/void", json={}, timeout=5)
    assert refused.status_code == 400


def test_an_auth_counts_once_at_its_capture_and_never_without_one(db, sim):
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    captured = authorise(sim, amount="50.00", currency="USD", customer_vault_id=VAULT,
                       at=at.isoformat())
    never = authorise(sim, amount="70.00", currency="USD", customer_vault_id=VAULT,
                    at=(at + timedelta(minutes=1)).isoformat())
    captured_then_voided = authorise(sim, amount="30.00", currency="USD",
                                   customer_vault_id=VAULT, at=(at + timedelta(minutes=2)).isoformat())
    assert captured["condition"] == never["condition"] == "pending" and captured["actions"] == ["auth"]
    account = nmi_account(db, sim)
    first = fetch_account(account.id)
    assert first.ok and first.sales.ok, first.sales.error
    assert first.sales.result.new_sales == 0 and status_of(db, captured["transaction_id"]) is None  # no payment yet
    capture_at = datetime.now(UTC).replace(microsecond=0)  # captured now, hours after the authorisation
    control(sim, f"transactions/{captured['transaction_id']}/capture", amount="45.00", at=capture_at.isoformat())
    control(sim, f"transactions/{captured_then_voided['transaction_id']}/capture")
    control(sim, f"transactions/{captured_then_voided['transaction_id']}/void")
    second = fetch_account(account.id)
    assert second.sales.ok and second.sales.result.new_sales == 1 and second.sales.result.voided == 1
    row = db.session.scalar(sa.select(Transaction).where(
        Transaction.gateway_transaction_id == captured["transaction_id"]))
    assert row.status == "approved" and row.amount_minor == 4500  # what was captured
    assert row.failed_at.replace(tzinfo=UTC) == capture_at  # the payment's time is its capture
    assert status_of(db, never["transaction_id"]) is None
    assert status_of(db, captured_then_voided["transaction_id"]) == "voided"
    paying = customer(db)
    assert (paying.successful_payments, paying.lifetime_value_minor) == (1, 4500)
    third = fetch_account(account.id)  # the overlap brings the capture again: counted once
    assert third.sales.ok and customer(db).successful_payments == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Transaction).where(
        Transaction.gateway_transaction_id == captured["transaction_id"])) == 1
