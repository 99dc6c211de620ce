"""Uniqueness that guards money and messages is the database's job: two writers racing, one wins."""

import threading

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models.types import utcnow
from tests.builders import make_case, make_gateway_account


def race(engine, statement, params, n=2):
    barrier = threading.Barrier(n)
    outcomes = []

    def insert():
        with engine.connect() as conn:
            barrier.wait()
            try:
                conn.execute(statement, params)
                conn.commit()
                outcomes.append("ok")
            except sa.exc.IntegrityError:
                conn.rollback()
                outcomes.append("duplicate")

    threads = [threading.Thread(target=insert) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return sorted(outcomes)


@pytest.fixture
def engine(app, backend):
    if backend != "mysql":
        pytest.skip("concurrent inserts are tested on MariaDB")
    engine = sa.create_engine(app.config["SQLALCHEMY_DATABASE_URI"], pool_size=4)
    yield engine
    engine.dispose()


def test_two_concurrent_inserts_of_one_gateway_transaction(engine):
    account_id = make_gateway_account().id
    db.session.commit()
    stmt = sa.text(
        "INSERT INTO transactions (gateway, gateway_account_id, gateway_transaction_id, status, amount_minor, "
        "currency, failed_at, raw, created_at) VALUES ('nmi', :a, '10001', 'failed', 100, 'USD', :t, '{}', :t)"
    )
    assert race(engine, stmt, {"a": account_id, "t": utcnow().replace(tzinfo=None)}) == ["duplicate", "ok"]
    count = db.session.scalar(sa.text("SELECT COUNT(*) FROM transactions WHERE gateway_transaction_id='10001'"))
    assert count == 1


def test_two_concurrent_inserts_of_one_message_idempotency_key(engine):
    case = make_case()
    db.session.commit()
    now = utcnow().replace(tzinfo=None)
    stmt = sa.text(
        "INSERT INTO outbox_messages (case_id, channel, fallbacks, priority, state, scheduled_for, deferred_by, "
        "attempts, idempotency_key, created_at, updated_at) VALUES (:c, 'email', '[]', 'default', 'scheduled', "
        ":t, '[]', 0, 'case:1:step:1', :t, :t)"
    )
    assert race(engine, stmt, {"c": case.id, "t": now}, n=4) == ["duplicate", "duplicate", "duplicate", "ok"]
