"""Rejecting a policy version (service and button), and the audit log filtered by date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.accounts.users import create_user
from app.audit import entry_hash, verify_chain
from app.extensions import db
from app.models import AuditEntry, PolicyVersion
from app.recovery.policies import PolicyServiceError, activate, approve, reject, save_draft, submit_draft
from tests.admin.world import STANDARD


def _pending(email: str = "writer@example.com") -> PolicyVersion:
    author = create_user(email, "correct horse battery", ["author"])
    save_draft("standard", STANDARD, actor=author)
    return submit_draft("standard", actor=author, note="try this")


def test_reject_stamps_who_when_why_and_the_version_can_never_run(app):
    version = _pending()
    approver = create_user("approver@example.com", "correct horse battery", ["approver"])
    with pytest.raises(PolicyServiceError, match="say why"):
        reject(version.id, approver, "  ")
    done = reject(version.id, approver, "The SMS step is too early")
    assert done.status == "rejected" and done.rejected_by_id == approver.id and done.rejected_at is not None
    assert done.rejection_reason == "The SMS step is too early"
    with pytest.raises(PolicyServiceError):
        approve(version.id, actor=approver, reason="changed my mind")
    with pytest.raises(PolicyServiceError):
        activate(version.id, actor=approver)
    with pytest.raises(PolicyServiceError, match="not yet activated"):
        reject(version.id, actor=approver, reason="again")
    entry = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "policy.version_rejected")).one()
    assert entry.details["reason"] == "The SMS step is too early" and entry.details["was"] == "pending_approval"
    assert verify_chain().ok


def test_an_approved_version_not_yet_active_can_be_rejected_but_not_an_active_one(app):
    version = _pending()
    approver = create_user("approver@example.com", "correct horse battery", ["approver"])
    approve(version.id, actor=approver, reason="ok")
    assert reject(version.id, actor=approver, reason="found a problem").status == "rejected"
    other = submit_draft("standard", actor=None)
    approve(other.id, actor=approver, reason="ok")
    activate(other.id, actor=approver)
    with pytest.raises(PolicyServiceError):
        reject(other.id, actor=approver, reason="too late")


def test_the_reject_button_is_for_approvers_and_the_history_shows_why(client, auth):
    version = _pending()
    auth.login("author")
    assert client.post(f"/admin/policies/reject/{version.id}", data={"rejection_reason": "no"}).status_code == 403
    auth.logout()
    auth.login("approver")
    page = client.get("/admin/policies/history/standard").get_data(as_text=True)
    assert 'name="rejection_reason"' in page
    page = client.post(f"/admin/policies/reject/{version.id}", data={"rejection_reason": "Holdout too small"},
                       follow_redirects=True).get_data(as_text=True)
    assert "rejected" in page and "Holdout too small" in page
    db.session.expire_all()
    assert db.session.get(PolicyVersion, version.id).status == "rejected"
    page = client.get("/admin/policies/history/standard").get_data(as_text=True)
    assert 'name="rejection_reason"' not in page  # nothing left to reject


def _entry_at(at: datetime, action: str) -> None:
    last = db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)).first()
    prev = last.hash if last else "0" * 64
    details = {"n": action}
    db.session.add(AuditEntry(at=at, actor="clock@example.com", action=action, target_type="test", target_id="1",
                              details=details, prev_hash=prev,
                              hash=entry_hash(prev, at, "clock@example.com", action, "test", "1", details)))
    db.session.flush()


def test_the_audit_log_filters_by_day(client, auth):
    base = datetime(2026, 11, 10, 23, 30, tzinfo=UTC)
    for n in range(4):  # the 10th (23:30 UTC), the 11th, 12th and 13th
        _entry_at(base + timedelta(days=n), f"test.day{10 + n}")
    db.session.commit()
    auth.login("auditor")

    def shown(query: str) -> set[str]:
        page = client.get(f"/admin/audit_log/?{query}").get_data(as_text=True)
        return {f"test.day{d}" for d in range(10, 14) if f"test.day{d}" in page}

    # the filters are, in order: on or after (21), on or before (22), between (23)
    assert shown("flt0_21=2026-11-11") == {"test.day11", "test.day12", "test.day13"}
    assert shown("flt0_22=2026-11-11") == {"test.day10", "test.day11"}  # the whole of the 11th, UTC
    assert shown("flt0_23=2026-11-11+to+2026-11-12") == {"test.day11", "test.day12"}
    assert "on or after" in client.get("/admin/audit_log/").get_data(as_text=True)
