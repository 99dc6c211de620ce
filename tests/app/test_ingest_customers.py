"""Ingest's customers (app.ingest.customers): matched by gateway customer id, else email, else phone, filled in by
the newest record, counted from their stored failures; an operator's timezone and locale kept; set-based, so these
pin what the ORM's change tracking used to do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from app.extensions import db
from app.gateways.base import FailedTransaction, GatewayCustomer
from app.ingest.transactions import ingest_context, ingest_records
from app.models import Customer, GatewayAccount, OutboxMessage, RecoveryCase, Transaction
from tests.builders import make_case, make_gateway_account, make_message, make_transaction

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
_n = iter(range(1, 10_000))


def failure(customer: GatewayCustomer, at: datetime, *, txn: str | None = None, order: str | None = None):
    n = next(_n)
    return FailedTransaction(
        gateway="nmi", gateway_transaction_id=txn or f"88000{n}", amount_minor=4900, currency="USD",
        decline_code="202", decline_text="Insufficient funds", merchant_advice_code=None, failed_at=at,
        modified_at=at, order_id=order or f"order-c{n}", order_description="Gold membership", customer=customer,
    )


def ingest(account, *records):
    result = ingest_records(list(records), ingest_context(account))
    db.session.expire_all()
    return result


def customers():
    return db.session.scalars(sa.select(Customer).order_by(Customer.id)).all()


def test_customers_are_matched_by_gateway_id_then_email_then_phone_and_otherwise_are_new(app):
    account = make_gateway_account()
    db.session.commit()
    first = ingest(
        account,
        failure(GatewayCustomer(customer_id="CV-1", email="a@example.com"), T0),
        failure(GatewayCustomer(email="B@Example.com "), T0),
        failure(GatewayCustomer(phone_e164="+13055550100"), T0),
        failure(GatewayCustomer(), T0),
    )
    assert (first.new_transactions, first.new_customers, first.new_cases) == (4, 4, 4)
    later = T0 + timedelta(days=1)
    again = ingest(
        account,
        failure(GatewayCustomer(customer_id="CV-1", email="new@example.com"), later),
        failure(GatewayCustomer(email="b@example.com"), later),
        failure(GatewayCustomer(phone_e164="+13055550100"), later),
        failure(GatewayCustomer(), later),  # nothing to match on: a customer of its own
    )
    assert (again.new_transactions, again.new_customers) == (4, 1)
    stored = customers()
    assert len(stored) == 5
    by_id = next(c for c in stored if c.gateway_customer_id == "CV-1")
    assert by_id.email == "new@example.com" and by_id.vault_id == "CV-1"
    assert [c.failed_payments for c in stored] == [2, 2, 2, 1, 1]
    assert next(c for c in stored if c.email == "b@example.com").last_seen_at == later


def test_the_newest_record_fills_in_and_an_older_one_only_moves_first_seen(app):
    account = make_gateway_account()
    db.session.commit()
    ingest(account, failure(GatewayCustomer(customer_id="CV-2", first_name="Ana", city="Miami", country="us",
                                             region="fl", postal_code="33101", card_expiry="1228"), T0))
    (customer,) = customers()
    assert (customer.country, customer.region, customer.card_expiry) == ("US", "FL", "1228")
    assert customer.first_seen_at == customer.last_seen_at == T0
    assert customer.timezone == "America/New_York" and customer.timezone_source == "postal"
    assert customer.timezone_confidence == Decimal("0.9")
    created, updated = customer.created_at, customer.updated_at
    # a record the gateway modified earlier than the last one seen: contact data stays, first seen moves back
    stale = GatewayCustomer(customer_id="CV-2", first_name="Old", city="Tampa")
    ingest(account, failure(stale, T0 - timedelta(days=3)))
    (customer,) = customers()
    assert (customer.first_name, customer.city) == ("Ana", "Miami")
    assert customer.first_seen_at == T0 - timedelta(days=3) and customer.last_seen_at == T0
    assert customer.failed_payments == 2 and customer.created_at == created
    # a newer one: what it says wins, what it leaves out is kept
    ingest(account, failure(GatewayCustomer(customer_id="CV-2", first_name="Ana María", last_name="Ruiz"),
                            T0 + timedelta(days=1)))
    (customer,) = customers()
    assert (customer.first_name, customer.last_name, customer.city) == ("Ana María", "Ruiz", "Miami")
    assert customer.last_seen_at == T0 + timedelta(days=1) and customer.updated_at >= updated


def test_a_timezone_set_by_an_operator_stays_and_a_new_address_moves_the_guess(app):
    account = make_gateway_account()
    db.session.commit()
    ingest(account, failure(GatewayCustomer(customer_id="CV-3", country="US", postal_code="33101"), T0))
    (customer,) = customers()
    customer.timezone_explicit = "Europe/Madrid"
    db.session.commit()
    ingest(account, failure(GatewayCustomer(customer_id="CV-3", country="US", postal_code="90012"),
                            T0 + timedelta(days=1)))
    (customer,) = customers()
    assert customer.postal_code == "90012"
    assert (customer.timezone, customer.timezone_candidates, customer.timezone_source) == (
        "Europe/Madrid", ["Europe/Madrid"], "explicit")
    customer.timezone_explicit = None
    db.session.commit()
    ingest(account, failure(GatewayCustomer(customer_id="CV-3", country="US", postal_code="90012"),
                            T0 + timedelta(days=2)))
    (customer,) = customers()
    assert (customer.timezone, customer.timezone_source) == ("America/Los_Angeles", "postal")


def test_a_locale_kept_from_before_its_source_was_stays_until_the_country_changes_and_messages_follow(app):
    account = make_gateway_account()
    db.session.commit()
    ingest(account, failure(GatewayCustomer(customer_id="CV-4", country="US"), T0))
    (customer,) = customers()
    customer.locale, customer.locale_source = "es_US", None  # stored before the source was
    case = db.session.scalars(sa.select(RecoveryCase)).one()
    waiting = make_message(case=case, locale="es_US")
    sent = make_message(case=case, locale="es_US", state="sent")
    db.session.commit()
    ingest(account, failure(GatewayCustomer(customer_id="CV-4", country="US", city="Miami"), T0 + timedelta(days=1)))
    (customer,) = customers()
    assert (customer.locale, customer.locale_source, customer.city) == ("es_US", None, "Miami")
    assert db.session.get(OutboxMessage, waiting.id).locale == "es_US"
    ingest(account, failure(GatewayCustomer(customer_id="CV-4", country="FR"), T0 + timedelta(days=2)))
    (customer,) = customers()
    assert (customer.locale, customer.locale_source) == ("fr_FR", "guessed")
    assert db.session.get(OutboxMessage, waiting.id).locale == "fr_FR"
    assert db.session.get(OutboxMessage, sent.id).locale == "es_US"


def test_a_transaction_ingested_twice_is_one_row_and_one_case(app):
    account = make_gateway_account()
    db.session.commit()
    record = failure(GatewayCustomer(customer_id="CV-5"), T0, txn="8800099")
    assert ingest(account, record).new_transactions == 1
    assert ingest(account, record).new_transactions == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Transaction)) == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase)) == 1
    assert customers()[0].failed_payments == 1


def test_a_returning_customer_who_paid_before_is_not_on_a_first_payment(app):
    account = make_gateway_account()
    db.session.commit()
    ingest(account, failure(GatewayCustomer(customer_id="CV-6"), T0))
    (customer,) = customers()
    make_transaction(customer_id=customer.id, gateway_account_id=account.id, status="approved",
                     failed_at=T0 + timedelta(days=1), decline_code=None, decline_reason=None, decline_kind=None)
    customer.successful_payments = 1
    db.session.commit()
    ingest(account, failure(GatewayCustomer(customer_id="CV-6"), T0 + timedelta(days=2), txn="8800200"))
    later = db.session.scalars(sa.select(Transaction).where(Transaction.gateway_transaction_id == "8800200")).one()
    first = db.session.scalars(
        sa.select(Transaction).where(Transaction.status == "failed", Transaction.gateway_transaction_id != "8800200")
    ).one()
    assert later.is_first_payment is False and first.is_first_payment is True


def test_a_failure_stored_already_opens_no_second_case(app):
    case = make_case()
    db.session.commit()
    account = db.session.get(GatewayAccount, case.transaction.gateway_account_id)
    again = failure(GatewayCustomer(customer_id="CV-7"), T0, txn=case.transaction.gateway_transaction_id)
    result = ingest(account, again)
    assert (result.seen, result.new_transactions, result.new_customers, result.new_cases) == (1, 0, 0, 0)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase)) == 1
