from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from app.models import Customer, Policy, PolicyVersion
from tests.builders import make_customer, make_message, make_transaction


def test_names_with_accents_cjk_and_emoji_survive_a_round_trip(db, backend):
    customer_id = make_customer(first_name="Zoë", last_name="山田 🙂", city="Zürich").id
    db.session.commit()
    db.session.expunge_all()
    again = db.session.get(Customer, customer_id)
    assert (again.first_name, again.last_name, again.city) == ("Zoë", "山田 🙂", "Zürich")
    # and straight from the database, not the identity map
    raw = db.session.execute(sa.text("SELECT last_name FROM customers WHERE id = :i"), {"i": customer_id}).scalar()
    assert raw == "山田 🙂"


def test_times_are_stored_in_utc_and_come_back_aware(db):
    local = datetime(2026, 3, 29, 3, 30, tzinfo=timezone(timedelta(hours=2)))
    tx = make_transaction(failed_at=local)
    tx_id, tx_type = tx.id, type(tx)
    db.session.commit()
    db.session.expunge_all()
    stored = db.session.execute(sa.text("SELECT failed_at FROM transactions WHERE id = :i"), {"i": tx_id}).scalar()
    stored = datetime.fromisoformat(str(stored)) if isinstance(stored, str) else stored
    assert stored.replace(tzinfo=None) == datetime(2026, 3, 29, 1, 30)
    again = db.session.get(tx_type, tx_id)
    assert again.failed_at == local and again.failed_at.tzinfo == UTC


def test_a_naive_datetime_is_refused(db):
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        make_transaction(failed_at=datetime(2026, 1, 1, 12, 0))
    db.session.rollback()


def test_money_is_integer_minor_units(db):
    tx = make_transaction(amount_minor=123_456_789_01, currency="USD")
    tx_id = tx.id
    db.session.commit()
    db.session.expunge_all()
    again = db.session.get(type(tx), tx_id)
    assert again.amount_minor == 123_456_789_01 and isinstance(again.amount_minor, int)


def test_the_same_gateway_transaction_is_one_row(db):
    tx = make_transaction()
    db.session.commit()
    with pytest.raises(sa.exc.IntegrityError):
        make_transaction(gateway_transaction_id=tx.gateway_transaction_id, gateway_account_id=tx.gateway_account_id)
    db.session.rollback()


def test_a_message_idempotency_key_is_unique(db):
    first = make_message()
    db.session.commit()
    with pytest.raises(sa.exc.IntegrityError):
        make_message(idempotency_key=first.idempotency_key)
    db.session.rollback()


def test_a_policy_version_never_changes_once_written(db):
    policy = Policy(name="standard")
    db.session.add(policy)
    db.session.flush()
    version = PolicyVersion(policy_id=policy.id, number=1, source="policy x", source_sha256="0" * 64)
    db.session.add(version)
    db.session.commit()
    version.source = "policy changed"
    with pytest.raises(ValueError, match="immutable"):
        db.session.commit()
    db.session.rollback()
    version = db.session.get(PolicyVersion, version.id)
    version.status = "active"  # review stamps may be filled in
    db.session.commit()
    with pytest.raises(ValueError, match="cannot be deleted"):
        db.session.delete(version)
        db.session.commit()
    db.session.rollback()
