"""Issue 15, finding 2: a rollback was a way around four-eyes. It copied any version (pending or rejected) into a
new approved version and activated it: an author who is also an approver activated their own unreviewed text, and
an approver revived a rejected one. A rollback now brings back only an approved version, and with four-eyes on the
copy waits for someone else's approval."""

from __future__ import annotations

import pytest

from app.accounts.users import create_user
from app.recovery import policies
from tests.admin.world import STANDARD

CHANGED = STANDARD.replace("step after 1d via sms, whatsapp", "step after 12h via sms, whatsapp")


@pytest.fixture
def people(app, db):  # type: ignore[no-untyped-def]
    policies.activate_text("standard", STANDARD, actor=None, note="set-up")
    both = create_user("both@example.com", "correct horse battery", ["author", "approver"])
    other = create_user("other@example.com", "correct horse battery", ["approver"])
    return both, other


def _submit(source: str, actor):  # type: ignore[no-untyped-def]
    policies.save_draft("standard", source, actor=actor)
    return policies.submit_draft("standard", actor=actor, note="test")


@pytest.mark.parametrize("four_eyes", [True, False])
def test_a_pending_version_cannot_be_rolled_back_to(people, four_eyes):  # type: ignore[no-untyped-def]
    both, _other = people
    pending = _submit(CHANGED, both)
    with pytest.raises(policies.PolicyServiceError, match="only a version that was approved"):
        policies.rollback("standard", pending.number, actor=both, reason="sneak it in", four_eyes=four_eyes)
    assert policies.active_version("standard").source == STANDARD


@pytest.mark.parametrize("four_eyes", [True, False])
def test_a_rejected_version_cannot_be_revived_by_a_rollback(people, four_eyes):  # type: ignore[no-untyped-def]
    both, other = people
    rejected = _submit(CHANGED, both)
    policies.reject(rejected.id, other, "too aggressive")
    with pytest.raises(policies.PolicyServiceError, match="only a version that was approved"):
        policies.rollback("standard", rejected.number, actor=other, reason="changed my mind", four_eyes=four_eyes)
    assert policies.active_version("standard").source == STANDARD


def test_with_four_eyes_the_copy_waits_for_someone_else(people):  # type: ignore[no-untyped-def]
    both, other = people
    v2 = _submit(CHANGED, both)
    policies.approve(v2.id, actor=other, reason="fine")
    policies.activate(v2.id, actor=other)
    copy = policies.rollback("standard", 1, actor=both, reason="complaints")
    assert copy.status == "pending_approval" and copy.source == STANDARD and copy.author_id == both.id
    assert policies.active_version("standard").number == 2
    with pytest.raises(policies.PolicyServiceError, match="someone other than its author"):
        policies.approve(copy.id, actor=both, reason="mine")
    policies.approve(copy.id, actor=other, reason="confirmed")
    assert policies.activate(copy.id, actor=other).source == STANDARD


def test_without_four_eyes_a_rollback_is_active_at_once_and_asks_why(people):  # type: ignore[no-untyped-def]
    both, other = people
    v2 = _submit(CHANGED, both)
    policies.approve(v2.id, actor=other, reason="fine")
    policies.activate(v2.id, actor=other)
    with pytest.raises(policies.PolicyServiceError, match="say why"):
        policies.rollback("standard", 1, actor=both, reason="  ", four_eyes=False)
    with pytest.raises(policies.PolicyServiceError, match="active version already"):
        policies.rollback("standard", 2, actor=both, reason="again", four_eyes=False)
    active = policies.rollback("standard", 1, actor=both, reason="complaints", four_eyes=False)
    assert active.status == "active" and active.source == STANDARD and active.number == 3
