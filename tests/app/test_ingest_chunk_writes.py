"""One chunk, many customers, each with changes of their own: ingest writes a chunk's customers in a few statements
(each row's values by its id, app.writes.per_row), and every customer must still get exactly their own values,
failure count and last-seen time, whether stored before or new in the chunk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from app.extensions import db
from app.gateways.base import FailedTransaction, GatewayCustomer
from app.ingest.transactions import ingest_context, ingest_records
from app.models import Customer, RecoveryCase, Transaction
from tests.builders import make_gateway_account

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
_n = iter(range(1, 10_000))


def failure(customer: GatewayCustomer, at: datetime) -> FailedTransaction:
    n = next(_n)
    return FailedTransaction(
        gateway="nmi", gateway_transaction_id=f"77000{n}", amount_minor=2500, currency="USD", decline_code="202",
        decline_text="Insufficient funds", merchant_advice_code=None, failed_at=at, modified_at=at,
        order_id=f"order-w{n}", order_description="Monthly box", customer=customer,
    )


def by_gateway_id() -> dict[str, Customer]:
    db.session.expire_all()
    return {c.gateway_customer_id: c for c in db.session.scalars(sa.select(Customer))}


def test_a_chunk_gives_each_customer_their_own_fields_count_and_last_seen_time(app):
    account = make_gateway_account()
    db.session.commit()
    ctx = ingest_context(account)
    ingest_records([failure(GatewayCustomer(customer_id=f"CV-{k}", first_name=f"First {k}", city="Miami"), T0)
                    for k in "abcd"], ctx)
    before = by_gateway_id()
    updated = {k: c.updated_at for k, c in before.items()}
    t1, t2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    result = ingest_records([
        failure(GatewayCustomer(customer_id="CV-a", first_name="Alba"), t1),
        failure(GatewayCustomer(customer_id="CV-a", first_name="Alba"), t2),
        failure(GatewayCustomer(customer_id="CV-b", first_name="Bea"), t1),  # same field as a, its own value
        failure(GatewayCustomer(customer_id="CV-c", email="C@Example.com", city="Tampa"), t2),
        failure(GatewayCustomer(customer_id="CV-d", first_name="Stale"), T0 - timedelta(days=2)),  # older: no say
        failure(GatewayCustomer(customer_id="CV-e", first_name="Eva"), t1),  # new, three failures in the chunk
        failure(GatewayCustomer(customer_id="CV-e", first_name="Eva"), T0),
        failure(GatewayCustomer(customer_id="CV-e", first_name="Eva"), t2),
        failure(GatewayCustomer(customer_id="CV-f"), t1),  # new, one
    ], ctx)
    assert (result.new_transactions, result.new_customers, result.new_cases) == (9, 2, 9)
    after = by_gateway_id()
    got = {k: (c.first_name, c.email, c.city, c.failed_payments, c.last_seen_at, c.first_seen_at)
           for k, c in after.items()}
    assert got == {
        "CV-a": ("Alba", None, "Miami", 3, t2, T0),
        "CV-b": ("Bea", None, "Miami", 2, t1, T0),
        "CV-c": ("First c", "c@example.com", "Tampa", 2, t2, T0),
        "CV-d": ("First d", None, "Miami", 2, T0, T0 - timedelta(days=2)),
        "CV-e": ("Eva", None, None, 3, t2, T0),
        "CV-f": (None, None, None, 1, t1, t1),
    }
    assert all(after[k].updated_at >= updated[k] for k in updated)
    # the counts are the stored failures, and fetching the same chunk again adds nothing
    counted = dict(db.session.execute(
        sa.select(Transaction.customer_id, sa.func.count()).where(Transaction.status == "failed")
        .group_by(Transaction.customer_id)).tuples().all())
    assert {c.id: c.failed_payments for c in after.values()} == counted
    again = ingest_records([failure(GatewayCustomer(customer_id="CV-a"), t2)], ctx)
    assert again.new_transactions == 1
    assert by_gateway_id()["CV-a"].failed_payments == 4
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase)) == 14


def test_chunks_of_other_customers_add_nothing_to_the_engines_statement_cache(app):
    # each chunk's per-row UPDATE is a statement of its own: kept in the cache, 100,000 failures held ~180 MiB
    account = make_gateway_account()
    db.session.commit()
    ctx = ingest_context(account)
    ingest_records([failure(GatewayCustomer(customer_id=f"CV-{k}"), T0) for k in range(40)], ctx)
    sizes = []
    for chunk in range(3):
        ingest_records([failure(GatewayCustomer(customer_id=f"CV-{k}", first_name=f"Name {chunk}"),
                                T0 + timedelta(hours=chunk + 1)) for k in range(chunk, 40, chunk + 2)], ctx)
        sizes.append(len(db.engine._compiled_cache))
    assert sizes[0] == sizes[1] == sizes[2]
    assert by_gateway_id()["CV-2"].first_name == "Name 2"
