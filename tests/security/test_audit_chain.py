"""Finding 6: the audit chain is keyed (HMAC with a key outside the database), serialises its writers (no fork under
concurrency on MariaDB) and is anchored by a signed head, so cutting off the newest entries is named (issue 15)."""

from __future__ import annotations

import hashlib
import threading

import pytest
import sqlalchemy as sa

from app.audit import GENESIS, entry_hash, record, verify_chain, write_checkpoint
from app.extensions import db
from app.models import AuditEntry
from app.models.audit import AuditChainHead
from app.models.types import utcnow


def _entries(n: int = 6) -> list[int]:
    ids = [record("alice@example.com", "policy.draft_saved", "policy", i, {"n": i}).id for i in range(n)]
    db.session.commit()
    return ids


def _sql(statement: str, **params) -> None:  # type: ignore[no-untyped-def]
    """Straight SQL, as someone with database access would; our own snapshot ended first (MariaDB)."""
    db.session.rollback()
    with db.engine.begin() as conn:
        conn.execute(sa.text(statement), params)
    db.session.expire_all()


def test_eight_writers_of_fifty_entries_each_leave_one_chain(app, backend):
    if backend != "mysql":
        pytest.skip("concurrent writers are tested on MariaDB (SQLite serialises every writer)")
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        with app.app_context():
            barrier.wait()
            try:
                for n in range(50):
                    record(f"worker{worker}@example.com", "case.note", "case", n, {"worker": worker, "n": n})
                    db.session.commit()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    db.session.expire_all()
    result = verify_chain()
    assert result.ok, result
    assert result.checked == 400
    prevs = db.session.scalars(sa.select(AuditEntry.prev_hash)).all()
    assert len(set(prevs)) == 400, "two entries follow the same one: the chain forked"


def test_cutting_off_the_newest_entries_is_named(app, runner):
    ids = _entries()
    _sql("DELETE FROM audit_log WHERE id >= :i", i=ids[-2])
    result = verify_chain()
    assert not result.ok and "newest entries were removed" in result.problem
    assert f"#{ids[-1]}" in result.problem
    cli = runner.invoke(args=["audit", "verify"])
    assert cli.exit_code == 1 and "newest entries were removed" in cli.output


def test_emptying_the_whole_log_is_named(app):
    _entries(3)
    _sql("DELETE FROM audit_log")
    result = verify_chain()
    assert not result.ok and "newest entries were removed" in result.problem


def test_re_chaining_with_forged_hashes_is_named_at_the_first_forged_entry(app):
    """Someone with database access alters entry 3 and recomputes every hash after it (plain SHA-256, or any key
    but ours), and even fixes up the head's named hash: the keyed hash of entry 3 gives it away."""
    ids = _entries()
    rows = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.id >= ids[2]).order_by(AuditEntry.id)).all()
    prev = rows[0].prev_hash
    forged = []
    for row in rows:
        actor = "mallory@example.com" if row.id == ids[2] else row.actor
        digest = entry_hash(prev, row.at, actor, row.action, row.target_type, row.target_id, row.details)
        forged.append((row.id, actor, prev, digest))
        prev = digest
    db.session.rollback()
    with db.engine.begin() as conn:
        for row_id, actor, prev_hash, digest in forged:
            conn.execute(sa.text("UPDATE audit_log SET actor = :a, prev_hash = :p, hash = :h WHERE id = :i"),
                         {"a": actor, "p": prev_hash, "h": digest, "i": row_id})
        conn.execute(sa.text("UPDATE audit_chain_head SET last_hash = :h"), {"h": prev})
    db.session.expire_all()
    result = verify_chain()
    # the head, fixed up without the key, no longer matches its signature: named first
    assert not result.ok and "signed head was altered" in result.problem


def test_a_forged_entry_is_named_even_when_the_head_is_untouched(app):
    ids = _entries()
    row = db.session.get(AuditEntry, ids[-1])
    forged = entry_hash(row.prev_hash, row.at, "mallory@example.com", row.action, row.target_type, row.target_id,
                        row.details)
    _sql("UPDATE audit_log SET actor = 'mallory@example.com', hash = :h WHERE id = :i", h=forged, i=ids[-1])
    result = verify_chain()
    assert not result.ok and result.first_broken_id == ids[-1] and "audit key" in result.problem


def test_downgrading_entries_to_the_old_unkeyed_format_is_named(app):
    ids = _entries()
    rows = db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)).all()
    prev = GENESIS
    updates = []
    for row in rows:
        digest = entry_hash(prev, row.at, row.actor, row.action, row.target_type, row.target_id, row.details)
        updates.append({"p": prev, "h": digest, "i": row.id})
        prev = digest
    db.session.rollback()
    with db.engine.begin() as conn:
        for u in updates:
            conn.execute(sa.text("UPDATE audit_log SET hash_version = 1, prev_hash = :p, hash = :h WHERE id = :i"), u)
    db.session.expire_all()
    result = verify_chain()
    assert not result.ok and "old unkeyed format" in result.problem and result.first_broken_id == ids[0]


def test_removing_the_head_is_named_and_stays_named(app):
    ids = _entries()
    _sql("DELETE FROM audit_chain_head")
    result = verify_chain()
    assert not result.ok and "signed head is missing" in result.problem
    record("bob@example.com", "case.note", "case", 1, {})  # the next writer makes a new head
    db.session.commit()
    result = verify_chain()
    assert not result.ok and "made again" in result.problem and result.first_broken_id == ids[-1]


def test_altering_the_head_is_named(app):
    _entries()
    _sql("UPDATE audit_chain_head SET entries = entries - 2")
    result = verify_chain()
    assert not result.ok and "signed head was altered" in result.problem


def test_a_head_put_back_from_an_old_copy_is_caught_by_the_checkpoint(app, tmp_path):
    app.config["AUDIT_CHECKPOINT_PATH"] = str(tmp_path / "audit-checkpoint.json")
    try:
        _entries(3)
        old_head = db.session.get(AuditChainHead, 1)
        saved = {"last_id": old_head.last_id, "last_hash": old_head.last_hash, "entries": old_head.entries,
                 "signature": old_head.signature}
        more = _entries(3)
        write_checkpoint()
        assert verify_chain().ok
        # cut back to the old state and put the old (genuinely signed) head back
        _sql("DELETE FROM audit_log WHERE id >= :i", i=more[0])
        _sql("UPDATE audit_chain_head SET last_id = :last_id, last_hash = :last_hash, entries = :entries, "
             "signature = :signature", **saved)
        result = verify_chain()
        assert not result.ok and "checkpoint" in result.problem and f"#{more[-1]}" in result.problem
    finally:
        app.config["AUDIT_CHECKPOINT_PATH"] = None


def test_an_old_unkeyed_chain_still_verifies_and_goes_on_keyed(app):
    """A log written before the key: its entries keep their plain SHA-256 (hash format 1) and no head. It verifies
    as it is, and the first new entry adopts it under a signed head and is keyed itself."""
    prev = GENESIS
    for n in range(3):
        at = utcnow()
        details = {"n": n}
        digest = entry_hash(prev, at, "old@example.com", "policy.activate", "policy", str(n), details)
        db.session.add(AuditEntry(at=at, actor="old@example.com", action="policy.activate", target_type="policy",
                                  target_id=str(n), details=details, prev_hash=prev, hash=digest, hash_version=1))
        prev = digest
    db.session.commit()
    assert verify_chain().ok
    new = record("new@example.com", "case.note", "case", 1, {})
    db.session.commit()
    assert new.hash_version == 2 and new.hash != hashlib.sha256(b"").hexdigest()
    result = verify_chain()
    assert result.ok and result.checked == 4


def test_the_key_is_outside_the_database(app):
    """The same entry under another key does not verify: knowing the database is not enough to forge."""
    _entries(2)
    other = dict(app.config)
    other["AUDIT_KEYS"] = ("another key, not ours, 32 characters or more",)
    other["SECRET_KEY"] = "another secret key entirely, also long"
    assert verify_chain(other).ok is False
    assert verify_chain().ok
