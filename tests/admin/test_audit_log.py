"""The audit log: tampering with a row directly in the database (MariaDB and SQLite) breaks the chain, and both the
admin's "Verify chain" page and the CLI name the first broken entry."""

from __future__ import annotations

import sqlalchemy as sa

from app.audit import record, verify_chain
from app.extensions import db
from app.models import AuditEntry


def _entries(n: int = 5) -> list[int]:
    ids = [record("alice@example.com", "policy.draft_saved", "policy", i, {"n": i}).id for i in range(n)]
    db.session.commit()
    return ids


def test_an_intact_log_verifies(client, auth):
    _entries()
    auth.login("auditor")
    page = client.get("/admin/audit_log/verify").get_data(as_text=True)
    assert 'data-ok="1"' in page and "Intact" in page
    assert 'id="verify-chain"' in client.get("/admin/audit_log/").get_data(as_text=True)


def test_altering_a_row_in_the_database_is_caught_and_named(app, client, auth, runner):
    ids = _entries()
    victim = ids[2]
    with db.engine.begin() as conn:  # straight SQL, as someone with database access would
        conn.execute(sa.text("UPDATE audit_log SET actor = 'mallory@example.com' WHERE id = :id"), {"id": victim})
    db.session.expire_all()
    result = verify_chain()
    assert not result.ok and result.first_broken_id == victim and "altered" in result.problem
    auth.login("auditor")
    page = client.get("/admin/audit_log/verify").get_data(as_text=True)
    assert f'data-first-broken="{victim}"' in page and f"Broken at entry #{victim}" in page
    assert "mallory@example.com" in page
    cli = runner.invoke(args=["audit", "verify"])
    assert cli.exit_code == 1 and f"BROKEN at entry {victim}" in cli.output


def test_deleting_a_row_in_the_database_is_caught_at_the_next_entry(app):
    ids = _entries()
    with db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_log WHERE id = :id"), {"id": ids[1]})
    db.session.expire_all()
    result = verify_chain()
    assert not result.ok and result.first_broken_id == ids[2] and "removed" in result.problem


def test_rewriting_a_row_with_a_fresh_hash_is_still_caught(app):
    """Recomputing the altered row's own hash does not help: without the audit key the row's keyed hash cannot be
    made again, so the row itself is named (before the chain was keyed, the next entry named it)."""
    from app.audit import entry_hash

    ids = _entries()
    row = db.session.get(AuditEntry, ids[1])
    forged = entry_hash(row.prev_hash, row.at, "mallory@example.com", row.action, row.target_type, row.target_id,
                        row.details)
    db.session.rollback()  # end our read transaction: on MariaDB its snapshot would hide the forgery
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET actor = 'mallory@example.com', hash = :h WHERE id = :id"),
                     {"h": forged, "id": ids[1]})
    db.session.expire_all()
    result = verify_chain()
    assert not result.ok and result.first_broken_id == ids[1] and "audit key" in result.problem


def test_the_admin_cannot_change_the_log_either(client, auth):
    ids = _entries(1)
    auth.login("admin")
    assert client.get(f"/admin/audit_log/edit/?id={ids[0]}").status_code == 403
    assert client.post("/admin/audit_log/delete/", data={"id": ids[0]}).status_code == 403
    assert verify_chain().ok


def test_policy_changes_are_in_the_log(client, auth, world):
    auth.login("author")
    client.post("/admin/policies/edit/standard", data={"source": world_text()})
    actions = db.session.scalars(sa.select(AuditEntry.action)).all()
    assert "policy.activated" in actions and "policy.draft_saved" in actions and "template.saved" in actions
    assert verify_chain().ok


def world_text() -> str:
    from tests.admin.world import STANDARD

    return STANDARD
