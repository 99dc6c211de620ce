"""Recoup's own charges come back from NMI (the Query API and webhooks): they are the case's payment history, never
new failed payments, never new cases. Against the NMI simulator over real sockets, on SQLite and MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.accounts.gateway_accounts import save_account
from app.extensions import db
from app.gateways.base import FailedTransaction, GatewayCustomer
from app.ingest.transactions import fetch_account, ingest_context, ingest_records
from app.models import Customer, FetchCursor, OutboxMessage, Payment, RecoveryCase, Transaction
from app.models.types import utcnow
from app.payments.charges import PayMethod, PayRequest, pay_case, run_due_payment_retries
from tests.builders import make_message

KEY = "whsec-own-charges"
NMI_SEED = 31  # this module's NMI simulator (tests/app/conftest.py)
NMI_SIGNING_KEY = KEY
CLIENT = {"timeout": [2.0, 3.0], "max_attempts": 2, "backoff": 0.01, "max_backoff": 0.05, "max_retry_after": 0.05}
PLAN = {"offers": ["partial_payment", "pay_later"], "offer_terms": {"pay_later": "P7D", "payment_plan": "P14D"},
        "timezone": "America/New_York", "steps": []}


@pytest.fixture
def account(app, sim):
    account = save_account("nmi-own", "nmi", api_url=f"{sim.url}/api", settings={"client": CLIENT},
                           credentials={"security_key": sim.security_key, "webhook_signing_key": KEY})
    db.session.commit()
    return account


def failed_case(sim, account, vault, order, amount="89.00"):
    """A failed sale at the merchant, fetched: its customer and its one case (plan offers set by hand)."""
    sim.add_transaction(condition="failed", amount=amount, currency="USD", decline_code="202", order_id=order,
                        customer_vault_id=vault, customer={"first_name": "Ana", "email": f"{vault.lower()}@example.com",
                                                           "country": "US", "state": "FL", "postal_code": "33101"})
    report = fetch_account(account.id)
    assert report.ok and report.result.new_cases == 1, report.summary()
    case = db.session.scalar(sa.select(RecoveryCase).join(Transaction, Transaction.id == RecoveryCase.transaction_id)
                             .where(Transaction.order_id == order))
    case.plan = dict(PLAN)
    db.session.commit()
    return case


def count(model, *where):
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def hook(client, sim, event_type, txn):
    delivery = sim.send_webhook(event_type, txn, url=f"{sim.url}/nowhere")  # the body NMI would push
    headers = {k: v for k, v in delivery.headers.items() if k.lower() != "content-length"}
    answer = client.post("/hooks/nmi", data=delivery.body, headers=headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.json


def test_declined_and_approved_page_charges_fetched_and_pushed_back_open_nothing(app, client, sim, account):
    case = failed_case(sim, account, "CV-O1", "ORD-O1")
    sim.set_vault_outcome("CV-O1", "202")
    assert pay_case(PayRequest(case.id, PayMethod.card_on_file, "attempt-own-vault-000001")).status == "declined"
    token, _ = sim.collect.mint({"ccnumber": "4000000000000002", "ccexp": "1230", "cvv": "123"})
    assert pay_case(PayRequest(case.id, PayMethod.new_card, "attempt-own-card-0000001",
                               payment_token=token)).status == "declined"
    sim.set_vault_outcome("CV-O1", None)
    assert pay_case(PayRequest(case.id, PayMethod.card_on_file, "attempt-own-paid-0000001")).status == "approved"
    ours = [t for t in sim.transactions if t.order_id.startswith(f"rc{case.id}-")]
    assert sorted(t.condition for t in ours) == ["failed", "failed", "pendingsettlement"]  # NMI keeps all three

    reports = [fetch_account(account.id) for _ in range(2)]
    assert all(r.ok and r.result.new_cases == 0 and r.result.new_transactions == 0 for r in reports)
    assert reports[0].result.own_charges == 2 and "2 of Recoup's own charge(s) recognised" in reports[0].summary()
    for txn in ours:  # and the webhooks NMI pushes for the same transactions
        kind = "transaction.sale.failure" if txn.condition == "failed" else "transaction.sale.success"
        assert hook(client, sim, kind, txn)["received"]
        assert count(RecoveryCase) == 1

    db.session.expire_all()
    assert count(RecoveryCase) == 1 and db.session.get(RecoveryCase, case.id).state == "recovered"
    assert count(Transaction, Transaction.status == "failed") == 1  # the merchant's failure only
    customer = db.session.get(Customer, case.customer_id)
    assert customer.failed_payments == 1 and customer.successful_payments == 1
    paid = db.session.scalar(sa.select(Payment).where(Payment.state == "approved"))
    sale = db.session.scalar(sa.select(Transaction).where(Transaction.status == "approved"))
    assert (sale.gateway_transaction_id, sale.customer_id) == (paid.gateway_transaction_id, customer.id)
    assert sorted(db.session.scalars(sa.select(Payment.state))) == ["approved", "declined", "declined"]
    assert all(p.gateway_transaction_id for p in db.session.scalars(sa.select(Payment)))


def test_retries_part_payments_and_payments_put_off_come_back_as_the_case_s_own(app, sim, account):
    case = failed_case(sim, account, "CV-O2", "ORD-O2")
    assert pay_case(PayRequest(case.id, PayMethod.partial, "attempt-part-now-0000001")).status == "approved"
    rest = db.session.scalar(sa.select(OutboxMessage).where(OutboxMessage.channel == "payment_due"))
    sim.set_vault_outcome("CV-O2", "202")
    assert run_due_payment_retries(rest.scheduled_for + timedelta(minutes=1)) == {"declined": 1}
    make_message(case=db.session.get(RecoveryCase, case.id), channel="payment_retry", template=None, address=None,
                 scheduled_for=utcnow() - timedelta(minutes=1))
    db.session.commit()
    assert run_due_payment_retries() == {"declined": 1}
    states = dict(db.session.execute(sa.select(Payment.method, Payment.state)).tuples().all())
    assert states == {"partial": "approved", "scheduled": "declined", "retry": "declined"}

    report = fetch_account(account.id)
    assert report.ok and report.result.new_cases == 0 and report.result.own_charges == 2, report.summary()
    db.session.expire_all()
    assert count(RecoveryCase) == 1 and db.session.get(RecoveryCase, case.id).state == "open"
    assert count(Transaction, Transaction.status == "failed") == 1
    part = db.session.scalar(sa.select(Transaction).where(Transaction.status == "approved"))
    assert part.customer_id == case.customer_id and part.amount_minor == 4450


def test_an_own_charge_is_known_by_its_transaction_id_or_by_its_order_before_it_answered(app, sim, account):
    case = failed_case(sim, account, "CV-O3", "ORD-O3")
    sim.set_vault_outcome("CV-O3", "202")
    declined = db.session.get(Payment, pay_case(PayRequest(case.id, PayMethod.card_on_file,
                                                           "attempt-by-txn-id-000001")).payment_id)
    in_flight = Payment(case_id=case.id, order_id=f"rc{case.id}-in-flight", method="vault", initiator="customer",
                        amount_minor=8900, currency="USD", state="pending")
    db.session.add(in_flight)
    db.session.commit()
    now = datetime.now(UTC)

    def record(txn_id, order_id):
        return FailedTransaction(gateway="nmi", gateway_transaction_id=txn_id, amount_minor=8900, currency="USD",
                                 decline_code="202", decline_text="Insufficient funds", merchant_advice_code=None,
                                 failed_at=now, modified_at=now, order_id=order_id, order_description=None,
                                 customer=GatewayCustomer(customer_id="CV-O3"))

    result = ingest_records([record(declined.gateway_transaction_id, None),  # an echo without its order id
                             record("55500001", in_flight.order_id)], ingest_context(account))
    assert (result.own_charges, result.new_transactions, result.new_cases) == (2, 0, 0)
    # an order id that only looks like ours is the merchant's: no false friends, the failure is not lost
    stranger = ingest_records([record("55500002", "rc999999-not-ours")], ingest_context(account))
    assert (stranger.own_charges, stranger.new_cases) == (0, 1)


def test_our_charges_in_another_gateway_account_are_not_ours_there(app, sim, account):
    case = failed_case(sim, account, "CV-O4", "ORD-O4")
    sim.set_vault_outcome("CV-O4", "202")
    pay_case(PayRequest(case.id, PayMethod.card_on_file, "attempt-other-account-01"))
    other = save_account("nmi-other", "nmi", api_url=f"{sim.url}/api", settings={"client": CLIENT},
                         credentials={"security_key": sim.security_key})
    db.session.commit()
    db.session.execute(sa.delete(FetchCursor))
    db.session.commit()
    report = fetch_account(other.id)
    assert report.result.own_charges == 0 and report.result.new_transactions == 2
