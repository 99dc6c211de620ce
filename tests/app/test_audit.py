import pytest
import sqlalchemy as sa

from app.audit import record, verify_chain
from app.models import AuditEntry


def _write_three(db):
    for n in range(3):
        record("ana@example.com", "policy.activate", "policy", n, {"version": n, "note": "Zoë ✓"})
    db.session.commit()


def test_an_untouched_chain_verifies(db):
    _write_three(db)
    result = verify_chain()
    assert result.ok and result.checked == 3


def test_an_altered_row_is_named(db):
    _write_three(db)
    second = db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)).all()[1]
    db.session.execute(sa.text("UPDATE audit_log SET actor = 'mallory' WHERE id = :i"), {"i": second.id})
    db.session.commit()
    result = verify_chain()
    assert not result.ok and result.first_broken_id == second.id


def test_a_deleted_row_breaks_the_chain_at_the_next_one(db):
    _write_three(db)
    ids = db.session.scalars(sa.select(AuditEntry.id).order_by(AuditEntry.id)).all()
    db.session.execute(sa.text("DELETE FROM audit_log WHERE id = :i"), {"i": ids[1]})
    db.session.commit()
    result = verify_chain()
    assert not result.ok and result.first_broken_id == ids[2]


def test_the_orm_refuses_to_change_or_delete_an_entry(db):
    _write_three(db)
    entry = db.session.scalars(sa.select(AuditEntry)).first()
    entry.actor = "mallory"
    with pytest.raises(ValueError, match="append-only"):
        db.session.commit()
    db.session.rollback()
