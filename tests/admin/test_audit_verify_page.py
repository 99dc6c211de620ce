"""Issue 15, low finding: the admin's "Verify chain" page said "Broken at entry #None" when what was wrong was the
checkpoint file or the chain's signed head, not an entry. It now says which of the three is wrong, and names an
entry only when an entry is wrong."""

from __future__ import annotations

import json

import sqlalchemy as sa

from app.audit import record, verify_chain, write_checkpoint
from app.extensions import db


def _entries(n: int = 4) -> list[int]:
    ids = [record("alice@example.com", "policy.draft_saved", "policy", i, {"n": i}).id for i in range(n)]
    db.session.commit()
    return ids


def _verify_page(client) -> str:  # type: ignore[no-untyped-def]
    response = client.get("/admin/audit_log/verify")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_a_tampered_checkpoint_is_named_without_an_entry_number(app, client, auth, runner, tmp_path):
    app.config["AUDIT_CHECKPOINT_PATH"] = str(tmp_path / "audit-checkpoint.json")
    _entries()
    write_checkpoint()
    auth.login("auditor")
    assert 'data-ok="1"' in _verify_page(client)  # the checkpoint as written matches

    path = tmp_path / "audit-checkpoint.json"
    checkpoint = json.loads(path.read_text())
    path.write_text(json.dumps({**checkpoint, "entries": checkpoint["entries"] + 5}))  # edited by hand
    result = verify_chain()
    assert not result.ok and result.kind == "checkpoint" and result.first_broken_id is None
    page = _verify_page(client)
    assert 'data-ok="0"' in page and 'data-kind="checkpoint"' in page
    assert "The checkpoint does not match the log." in page
    assert "is not signed with the audit key" in page and "are chained correctly" in page
    assert "#None" not in page and "Broken at entry" not in page and "data-first-broken" not in page
    cli = runner.invoke(args=["audit", "verify"])
    assert cli.exit_code == 1 and "BROKEN (checkpoint file)" in cli.output and "None" not in cli.output

    path.write_text("{not json")
    page = _verify_page(client)
    assert "cannot be read" in page and "#None" not in page and "The checkpoint does not match" in page


def test_the_signed_head_is_named_when_every_entry_was_removed(app, client, auth):
    _entries()
    auth.login("auditor")  # signed in first: the sign-in is an entry too
    db.session.rollback()
    with db.engine.begin() as conn:  # straight SQL, as someone with database access would
        conn.execute(sa.text("DELETE FROM audit_log"))
    db.session.expire_all()
    result = verify_chain()
    assert not result.ok and result.kind == "head" and result.first_broken_id is None
    page = _verify_page(client)
    assert 'data-kind="head"' in page and "The signed head of the chain does not match the log." in page
    assert "#None" not in page and "Broken at entry" not in page


def test_an_altered_entry_is_still_named_by_its_number(client, auth):
    ids = _entries()
    db.session.rollback()
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET action = 'policy.nothing' WHERE id = :id"), {"id": ids[1]})
    db.session.expire_all()
    auth.login("auditor")
    page = _verify_page(client)
    assert f"Broken at entry #{ids[1]}." in page and 'data-kind="entry"' in page
    assert f'data-first-broken="{ids[1]}"' in page
