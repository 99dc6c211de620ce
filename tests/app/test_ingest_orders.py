"""A later failure on an order that already has a case (retries, subscription renewals that reuse the order id):
it joins the open case, or opens a new case that names the closed one, or (the closed case's own payment failing
again) is attached to it; always with a transition the case timeline shows, never silently. NMI simulator over
real sockets, SQLite and MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.accounts.gateway_accounts import save_account
from app.extensions import db
from app.ingest.transactions import fetch_account
from app.models import CaseTransition, FetchCursor, RecoveryCase, Transaction
from app.recovery.case_timeline import case_timeline
from app.recovery.cases import move_case

KEY = "whsec-order-tests"
NMI_SEED = 41  # this module's NMI simulator (tests/app/conftest.py)
NMI_SIGNING_KEY = KEY
CLIENT = {"timeout": [2.0, 3.0], "backoff": 0.01, "max_backoff": 0.05, "max_retry_after": 0.05}
PAYER = {"first_name": "Ana", "email": "ana.orders@example.com", "country": "US", "state": "FL",
         "postal_code": "33101"}


@pytest.fixture
def account(app, sim):
    account = save_account("nmi-orders", "nmi", api_url=f"{sim.url}/api", settings={"client": CLIENT},
                           credentials={"security_key": sim.security_key, "webhook_signing_key": KEY})
    db.session.commit()
    return account


def days_ago(n: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(days=n)


def fail(sim, at, order="SUB-1", amount="49.00", **extra):
    return sim.add_transaction(condition="failed", amount=amount, currency="USD", decline_code="202", order_id=order,
                               customer_vault_id="CV-R1", customer=PAYER, at=at, **extra)


def fetch(account):
    """A fetch as the first one (the whole look-back): these tests date failures in the past."""
    db.session.execute(sa.delete(FetchCursor))
    db.session.commit()
    report = fetch_account(account.id)
    assert report.ok, report.summary()
    return report


def case_of(txn_id):
    tx = db.session.scalar(sa.select(Transaction).where(Transaction.gateway_transaction_id == txn_id))
    return db.session.scalar(sa.select(RecoveryCase).where(RecoveryCase.transaction_id == tx.id)), tx


def notes(case):
    return [t for t in db.session.scalars(sa.select(CaseTransition).where(CaseTransition.case_id == case.id))
            if t.from_state == t.to_state]


def close(case, state, at):
    move_case(case, state, reason="test", actor="test", at=at)
    db.session.commit()


def test_a_failure_on_an_order_with_an_open_case_joins_it_and_the_timeline_says_so(app, client, sim, account):
    first = fail(sim, days_ago(3))
    fetch(account)
    case, _ = case_of(first.transaction_id)
    retry = fail(sim, days_ago(2))  # the merchant's retry of the same order
    report = fetch(account)
    assert (report.result.new_cases, report.result.joined) == (0, 1) and "1 joined" in report.summary()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase)) == 1
    joined = db.session.scalar(sa.select(Transaction).where(Transaction.gateway_transaction_id ==
                                                            retry.transaction_id))
    assert joined.status == "failed" and joined.joined_case_id == case.id
    [note] = notes(case)
    assert note.to_state == "open" and note.actor == "ingest"
    assert note.reason.startswith("another failure joined this case") and retry.transaction_id in note.reason
    entries = [e for e in case_timeline(case) if e.kind == "state" and retry.transaction_id in (e.detail["reason"]
                                                                                              or "")]
    assert len(entries) == 1

    # the same through a webhook: the failure NMI pushes joins the case too
    pushed = fail(sim, None)
    delivery = sim.send_webhook("transaction.sale.failure", pushed, url=f"{sim.url}/nowhere")
    answer = client.post("/hooks/nmi", data=delivery.body,
                         headers={k: v for k, v in delivery.headers.items() if k.lower() != "content-length"})
    assert answer.json["received"]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase)) == 1
    joined = db.session.scalar(sa.select(Transaction).where(Transaction.gateway_transaction_id ==
                                                            pushed.transaction_id))
    assert joined.status == "failed" and joined.joined_case_id == case.id
    assert len(notes(case)) == 2


def test_two_failures_of_a_new_order_in_one_fetch_make_one_case_and_one_join(app, sim, account):
    first, second = fail(sim, days_ago(2), order="SUB-2"), fail(sim, days_ago(1), order="SUB-2")
    report = fetch(account)
    assert (report.result.new_cases, report.result.joined) == (1, 1)
    case, _ = case_of(first.transaction_id)
    [note] = notes(case)
    assert second.transaction_id in note.reason
    assert case_of(second.transaction_id)[1].joined_case_id == case.id


@pytest.mark.parametrize("state", ["recovered", "expired", "cancelled"])
def test_a_renewal_failing_after_the_case_closed_opens_a_new_case_that_names_it(app, sim, account, state):
    first = fail(sim, days_ago(25), order="SUB-3")
    fetch(account)
    case, _ = case_of(first.transaction_id)
    close(case, state, days_ago(20))
    renewal = fail(sim, days_ago(1), order="SUB-3")  # a month on, the same order id, a new charge
    report = fetch(account)
    assert (report.result.new_cases, report.result.joined) == (1, 0)
    new_case, tx = case_of(renewal.transaction_id)
    assert new_case.id != case.id and tx.joined_case_id is None and new_case.state == "open"
    [opening] = db.session.scalars(sa.select(CaseTransition).where(CaseTransition.case_id == new_case.id))
    assert f"earlier case #{case.id} is {state}" in opening.reason and renewal.transaction_id in opening.reason
    assert db.session.get(RecoveryCase, case.id).state == state  # the earlier case is left as it was


def test_the_settled_payment_failing_again_opens_no_case(app, sim, account):
    first = fail(sim, days_ago(10), order="SUB-4")
    fetch(account)
    case, _ = case_of(first.transaction_id)
    close(case, "recovered", days_ago(6))  # the customer paid through Recoup
    late = fail(sim, days_ago(8), order="SUB-4")  # a retry from before the payment, reported late
    again = fail(sim, days_ago(5), order="SUB-4")  # the merchant retried the paid order: same amount, same week
    report = fetch(account)
    assert (report.result.new_cases, report.result.joined) == (0, 2)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase)) == 1
    for txn in (late, again):
        assert case_of(txn.transaction_id)[1].joined_case_id == case.id
    reasons = [n.reason for n in notes(case)]
    assert len(reasons) == 2 and all("after the case was recovered" in r and "no new case" in r for r in reasons)
    assert db.session.get(RecoveryCase, case.id).state == "recovered"
    # a different amount in the same week is a different charge: a case of its own, naming the paid one
    other = fail(sim, days_ago(4), order="SUB-4", amount="99.00")
    assert fetch(account).result.new_cases == 1
    assert f"#{case.id}" in db.session.scalar(sa.select(CaseTransition.reason).where(
        CaseTransition.case_id == case_of(other.transaction_id)[0].id))


def test_the_orders_of_a_chunk_are_found_by_their_index_not_by_a_scan(app, backend):
    """MariaDB chose to scan every transaction for a chunk's orders, so ingest slowed with every row stored."""
    if backend != "mysql":
        pytest.skip("the plan is MariaDB's")
    from app.ingest.order_cases import cases_of_orders
    from tests.builders import make_case, make_gateway_account, make_transaction

    account = make_gateway_account()
    for n in range(300):
        make_case(transaction=make_transaction(gateway_account_id=account.id, order_id=f"ORD-{n % 150}"))
    db.session.commit()
    db.session.execute(sa.text("ANALYZE TABLE transactions, recovery_cases"))
    query = cases_of_orders({f"ORD-{n}" for n in range(0, 150, 3)}, account.id)
    sql = query.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True})
    plan = {row.table: row for row in db.session.execute(sa.text(f"EXPLAIN {sql}"))}
    assert plan["transactions"].type != "ALL"
    assert plan["transactions"].key == "ix_transactions_order"
    assert len(db.session.execute(query).all()) == 100
