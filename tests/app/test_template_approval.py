"""Four-eyes approval of message templates (issue 15, finding 5): with it on, a saved version is a draft customers
never receive; it goes live only when someone else with the approver role approves it; a rejected version never
goes live; every step is in the audit log. With it off, saving goes live as before. Checked through the resolver and
through real dispatch runs to the channel simulators, on SQLite and MariaDB."""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta
from email.policy import default as email_policy

import pytest
import sqlalchemy as sa

from app.accounts.users import create_user
from app.extensions import db
from app.messages.default_templates import DEFAULTS
from app.messages.templates_service import (
    TemplateReviewError,
    apply_whatsapp_template_update,
    approve_template_version,
    reject_template_version,
    resolve_template,
    save_template,
    submit_template_version,
)
from app.models import AuditEntry, MessageTemplate, MessageTemplateVersion, User
from app.outbox.run import dispatch_due
from app.settings import set_setting
from rules.vocabulary import TemplateStatus
from tests.builders import make_case, make_customer, make_message, make_transaction

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
LIVE = "Hello {{ customer.first_name }}, LIVEWORDING: {{ payment_link }}"
EDIT = "Hello {{ customer.first_name }}, EDITWORDING: {{ payment_link }}"
BUILTIN = DEFAULTS[("payment_failed", "email", "en")]


class People:
    """Who acts, read afresh each time (a dispatch run ends the session the test's objects were loaded in)."""

    def __init__(self) -> None:
        self.ids = {key: create_user(f"{key}@example.com", "correct horse battery", [role], name=key.title()).id
                    for key, role in (("author", "author"), ("approver", "approver"), ("both", "admin"),
                                      ("auditor", "auditor"))}
        db.session.commit()

    def __getattr__(self, key: str) -> User:
        return db.session.get(User, self.ids[key])


@pytest.fixture
def people(app) -> People:  # type: ignore[no-untyped-def]
    return People()


def _save(body: str, actor, **kwargs):  # type: ignore[no-untyped-def]
    return save_template("payment_failed", "email", "en", subject="{{ brand }}: payment", body=body, actor=actor,
                         **kwargs)


def _live_body() -> str:
    return resolve_template("payment_failed", "email", "en_US").body


def _actions() -> list[str]:
    query = sa.select(AuditEntry.action).where(AuditEntry.action.like("template.%")).order_by(AuditEntry.id)
    return list(db.session.scalars(query))


def _text_of(mail) -> str:  # type: ignore[no-untyped-def]
    parsed = email.message_from_string(mail["raw"], policy=email_policy)
    part = parsed.get_body(preferencelist=("plain",))
    return part.get_content() if part is not None else mail["raw"]


def _dispatch_one(channels, customer=None) -> str:  # type: ignore[no-untyped-def]
    """A due payment_failed email to a customer, sent by a real dispatch run; the text the customer received."""
    case = make_case(transaction=make_transaction(customer=customer)) if customer is not None else make_case()
    message = make_message(case=case, channel="email", template="payment_failed", locale="en_US",
                           scheduled_for=NOW - timedelta(minutes=1))
    mid = message.id
    db.session.commit()
    assert dispatch_due(now=NOW)["sent"] == 1
    [mail] = [m for m in channels.smtp.received() if m["reference"] == f"m{mid}"]
    return _text_of(mail)


def test_with_four_eyes_a_saved_version_is_a_draft_until_someone_else_approves_it(people):
    draft = _save(EDIT, people.author)
    assert draft.status == TemplateStatus.DRAFT and draft.created_by_id == people.author.id
    assert _live_body() == BUILTIN.body  # no approved version yet: the built-in goes on
    submitted = submit_template_version(draft.id, actor=people.author)
    assert submitted.status == TemplateStatus.PENDING_APPROVAL and submitted.submitted_at is not None
    assert _live_body() == BUILTIN.body
    approved = approve_template_version(draft.id, actor=people.approver)
    assert approved.status == TemplateStatus.APPROVED and approved.approved_by_id == people.approver.id
    assert approved.approved_at is not None
    assert _live_body() == EDIT
    assert _actions() == ["template.saved", "template.version_submitted", "template.version_approved"]
    entry = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "template.version_approved"))
    assert entry.actor == people.approver.email and entry.details["version"] == 1
    assert entry.details["author_id"] == people.author.id and entry.details["previous"] is None


def test_the_previous_approved_version_stays_live_while_the_next_waits(people):
    first = _save(LIVE, people.author)
    submit_template_version(first.id, actor=people.author)
    approve_template_version(first.id, actor=people.approver)
    second = _save(EDIT, people.author)
    assert _live_body() == LIVE
    submit_template_version(second.id, actor=people.author)
    assert _live_body() == LIVE
    template = db.session.get(MessageTemplate, second.template_id)
    assert template.current_version_id == first.id
    approve_template_version(second.id, actor=people.both)  # an admin is an approver too
    assert _live_body() == EDIT


def test_an_author_cannot_approve_their_own_version_even_as_an_admin(people):
    version = _save(EDIT, people.both)
    submit_template_version(version.id, actor=people.both)
    with pytest.raises(TemplateReviewError) as refused:
        approve_template_version(version.id, actor=people.both)
    assert refused.value.reason == "own_version"
    db.session.rollback()
    assert db.session.get(MessageTemplateVersion, version.id).status == TemplateStatus.PENDING_APPROVAL
    assert _live_body() == BUILTIN.body
    with pytest.raises(TemplateReviewError) as nobody:  # four-eyes needs a person, not the system
        approve_template_version(version.id, actor=None)
    assert nobody.value.reason == "own_version"
    assert "template.version_approved" not in _actions()


def test_only_an_approver_approves_and_only_a_submitted_version(people):
    version = _save(EDIT, people.author)
    with pytest.raises(TemplateReviewError) as draft:
        approve_template_version(version.id, actor=people.approver)
    assert draft.value.reason == "not_pending"
    submit_template_version(version.id, actor=people.author)
    with pytest.raises(TemplateReviewError) as again:
        submit_template_version(version.id, actor=people.author)
    assert again.value.reason == "not_draft"
    for who in (people.author, people.auditor):
        with pytest.raises(TemplateReviewError) as role:
            approve_template_version(version.id, actor=who)
        assert role.value.reason == "not_allowed"
    with pytest.raises(TemplateReviewError) as auditor:
        reject_template_version(version.id, actor=people.auditor, reason="no")
    assert auditor.value.reason == "not_allowed"
    assert _live_body() == BUILTIN.body


def test_a_rejected_version_never_goes_live(people):
    live = _save(LIVE, people.author)
    submit_template_version(live.id, actor=people.author)
    approve_template_version(live.id, actor=people.approver)
    bad = _save(EDIT, people.author)
    submit_template_version(bad.id, actor=people.author)
    with pytest.raises(TemplateReviewError) as no_reason:
        reject_template_version(bad.id, actor=people.approver, reason="  ")
    assert no_reason.value.reason == "no_reason"
    rejected = reject_template_version(bad.id, actor=people.approver, reason="the link text misleads")
    assert rejected.status == TemplateStatus.REJECTED and rejected.rejected_by_id == people.approver.id
    assert rejected.rejection_reason == "the link text misleads"
    for step in (lambda: approve_template_version(bad.id, actor=people.both),
                 lambda: submit_template_version(bad.id, actor=people.author)):
        with pytest.raises(TemplateReviewError):
            step()
        db.session.rollback()
    assert _live_body() == LIVE
    entry = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "template.version_rejected"))
    assert entry.details["reason"] == "the link text misleads" and entry.details["was"] == "pending_approval"


def test_an_older_version_cannot_replace_a_newer_live_one(people):
    older = _save(LIVE, people.author)
    submit_template_version(older.id, actor=people.author)
    newer = _save(EDIT, people.author)
    submit_template_version(newer.id, actor=people.author)
    approve_template_version(newer.id, actor=people.approver)
    with pytest.raises(TemplateReviewError) as refused:
        approve_template_version(older.id, actor=people.approver)
    assert refused.value.reason == "older_than_live"
    db.session.rollback()
    assert _live_body() == EDIT


def test_with_four_eyes_off_saving_goes_live_as_before(people):
    set_setting("policy_four_eyes", False, actor="admin@example.com")
    db.session.commit()
    version = _save(EDIT, people.author)
    assert version.status == TemplateStatus.APPROVED and version.approved_by_id == people.author.id
    assert _live_body() == EDIT
    entry = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "template.saved"))
    assert entry.details["status"] == "approved" and entry.details["four_eyes"] is False


def test_with_four_eyes_off_an_author_approver_may_approve_what_waits(people):
    version = _save(EDIT, people.both)
    submit_template_version(version.id, actor=people.both)
    set_setting("policy_four_eyes", False, actor="admin@example.com")
    db.session.commit()
    assert approve_template_version(version.id, actor=people.both).status == TemplateStatus.APPROVED
    assert _live_body() == EDIT


def test_a_pending_edit_is_not_what_the_customer_gets_from_a_real_dispatch(people, channels):
    live = _save(LIVE, people.author)
    submit_template_version(live.id, actor=people.author)
    approve_template_version(live.id, actor=people.approver)
    edit = _save(EDIT, people.author).id
    assert "LIVEWORDING" in _dispatch_one(channels)  # a draft
    submit_template_version(edit, actor=people.author)
    received = _dispatch_one(channels)  # waiting for approval
    assert "LIVEWORDING" in received and "EDITWORDING" not in received
    approve_template_version(edit, actor=people.approver)
    received = _dispatch_one(channels)
    assert "EDITWORDING" in received and "LIVEWORDING" not in received


def test_a_rejected_first_version_leaves_the_built_in_going_out(people, channels):
    version = _save(EDIT, people.author)
    submit_template_version(version.id, actor=people.author)
    reject_template_version(version.id, actor=people.approver, reason="no")
    received = _dispatch_one(channels)
    assert "EDITWORDING" not in received
    assert received.strip().startswith(BUILTIN.body.split("{{")[0].strip())


def test_a_current_version_that_is_not_approved_is_never_resolved(people):
    """Defence in depth: even a live pointer set by hand to a draft is not sent."""
    version = _save(EDIT, people.author)
    template = db.session.get(MessageTemplate, version.template_id)
    template.current_version_id = version.id
    db.session.commit()
    assert _live_body() == BUILTIN.body


def test_whatsapp_keeps_metas_status_alongside_our_approval(people, channels):
    # the parameters Meta approved for payment_failed (the simulator holds the built-in's): four, in this order
    body = "Hello {{ customer.first_name or 'there' }}: {{ amount }} to {{ brand }}. Pay: {{ payment_link }}"
    live = save_template("payment_failed", "whatsapp", "en_US", body=body, actor=people.author)
    submit_template_version(live.id, actor=people.author)
    approve_template_version(live.id, actor=people.approver)
    template = db.session.get(MessageTemplate, live.template_id)
    template.whatsapp_name, template.whatsapp_status = "payment_failed", "APPROVED"
    db.session.commit()
    # a pending edit with a fifth parameter: the message still goes with the approved body's four (Meta would refuse
    # five: the simulator answers 132000 and nothing is sent)
    edit = save_template("payment_failed", "whatsapp", "en_US", body=body + " {{ transaction.failed_on }}",
                         actor=people.author)
    submit_template_version(edit.id, actor=people.author)
    assert db.session.get(MessageTemplate, template.id).whatsapp_status == "APPROVED"
    assert resolve_template("payment_failed", "whatsapp", "en_US").body == body

    class Update:
        name, event = "payment_failed", "PAUSED"

    apply_whatsapp_template_update(Update())
    row = db.session.get(MessageTemplate, template.id)
    assert row.whatsapp_status == "PAUSED" and row.current_version_id == live.id
    customer = make_customer(phone_e164="+13055550111")
    message = make_message(case=make_case(transaction=make_transaction(customer=customer)), channel="whatsapp",
                           template="payment_failed", locale="en_US", address="+13055550111",
                           scheduled_for=NOW - timedelta(minutes=1))
    mid = message.id
    db.session.commit()
    assert dispatch_due(now=NOW)["sent"] == 1
    assert channels.whatsapp.count(f"m{mid}") == 1
    [sent] = [m for m in channels.whatsapp.messages.values() if m["reference"] == f"m{mid}"]
    assert sent["type"] == "template" and sent["template"] == "payment_failed"


@pytest.fixture
def empty_database_url(backend, tmp_path, pytestconfig):  # type: ignore[no-untyped-def]
    from tests import backends

    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'before-approval.db'}"
        return
    if not pytestconfig._recoup_mysql:
        pytest.skip("MariaDB/MySQL not available")
    with backends.temporary_mysql_database("recoup_tpl") as url:
        yield url


def test_the_migration_approves_every_version_saved_before_approval_existed(empty_database_url):
    from flask_migrate import downgrade, upgrade

    from app import create_app
    from config import TestingConfig

    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=empty_database_url)
    with app.app_context():
        upgrade(revision="c2a0c0de0002")
        with db.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO message_templates (id, name, channel, locale, created_at) "
                                 "VALUES (1, 'payment_failed', 'email', 'en', '2026-11-01 10:00:00')"))
            for n in (1, 2):
                conn.execute(sa.text("INSERT INTO message_template_versions (id, template_id, number, body, "
                                     "created_at) VALUES (:n, 1, :n, :body, '2026-11-0' || :n || ' 10:00:00')"
                                     if db.engine.dialect.name == "sqlite" else
                                     "INSERT INTO message_template_versions (id, template_id, number, body, "
                                     "created_at) VALUES (:n, 1, :n, :body, CONCAT('2026-11-0', :n, ' 10:00:00'))"),
                             {"n": n, "body": f"Old text {n}: {{{{ payment_link }}}}"})
            conn.execute(sa.text("UPDATE message_templates SET current_version_id = 2 WHERE id = 1"))
        upgrade(revision="c3a0c0de0003")
        with db.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT number, status, approved_at, created_at FROM "
                                        "message_template_versions ORDER BY number")).all()
        assert [(r[0], r[1]) for r in rows] == [(1, "approved"), (2, "approved")]
        assert all(r[2] is not None and str(r[2])[:10] == str(r[3])[:10] for r in rows)
        assert resolve_template("payment_failed", "email", "en").body == "Old text 2: {{ payment_link }}"
        db.session.remove()  # its transaction would hold the table's metadata lock on MariaDB
        downgrade(revision="c2a0c0de0002")  # and back: the columns go, the texts stay
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM message_template_versions")).scalar() == 2
        db.session.remove()
        db.engine.dispose()
