"""Template approval in the admin, over HTTP as each role: an author saves a draft and submits it, only an approver
approves or rejects (403 for anyone else), an author never approves their own version (a clear refusal, in Spanish
too), and the page says each version's status and who wrote and approved it (issue 15, finding 5)."""

from __future__ import annotations

import sqlalchemy as sa
from flask_babel import refresh

from app.accounts.users import create_user
from app.extensions import db
from app.messages.default_templates import DEFAULTS
from app.messages.templates_service import resolve_template
from app.models import AuditEntry, MessageTemplate, MessageTemplateVersion
from rules.vocabulary import TemplateStatus

URL = "/admin/templates/edit?name=final_notice&channel=sms&locale=en"
BODY = "{{ brand }}: NEWWORDING {{ payment_link }} Reply STOP to opt out"
PASSWORD = "correct horse battery"


def _sign_in(client, email: str) -> None:  # type: ignore[no-untyped-def]
    client.get("/logout")
    assert client.post("/login", data={"email": email, "password": PASSWORD}).status_code == 302


def _version() -> MessageTemplateVersion:
    db.session.expire_all()
    template = db.session.scalar(sa.select(MessageTemplate).where(MessageTemplate.name == "final_notice",
                                                                  MessageTemplate.channel == "sms"))
    return template.versions[-1]


def _live() -> str:
    return resolve_template("final_notice", "sms", "en_US").body


def test_an_author_saves_and_submits_an_approver_approves(client, app):
    create_user("ana@example.com", PASSWORD, ["author"], name="Ana Author")
    create_user("abe@example.com", PASSWORD, ["approver"], name="Abe Approver")
    db.session.commit()
    _sign_in(client, "ana@example.com")
    saved = client.post(URL, data={"body": BODY}, follow_redirects=True).get_data(as_text=True)
    assert "Saved as version 1. It is a draft" in saved
    assert 'data-status="draft"' in saved and "Submit for approval" in saved and "Written by Ana Author" in saved
    assert 'id="template-waiting"' in saved and "customers still receive the built-in text" in saved
    assert "approve-version-form" not in saved  # an author has no Approve button
    version = _version()
    assert version.status == TemplateStatus.DRAFT and _live() == DEFAULTS[("final_notice", "sms", "en")].body
    listing = client.get("/admin/templates/?channel=sms").get_data(as_text=True)
    assert "v1: draft" in listing

    submitted = client.post(f"/admin/templates/versions/{version.id}/submit", follow_redirects=True)
    assert "Version 1 submitted: it goes out once someone else approves it." in submitted.get_data(as_text=True)
    assert _version().status == TemplateStatus.PENDING_APPROVAL and "NEWWORDING" not in _live()
    again = client.post(f"/admin/templates/versions/{version.id}/submit", follow_redirects=True)
    assert "Version 1 was submitted already." in again.get_data(as_text=True)
    assert client.post(f"/admin/templates/versions/{version.id}/approve").status_code == 403
    assert client.post(f"/admin/templates/versions/{version.id}/reject", data={"reason": "x"}).status_code == 403
    assert "NEWWORDING" not in _live()

    _sign_in(client, "abe@example.com")
    page = client.get(URL).get_data(as_text=True)
    assert "approve-version-form" in page and "reject-version-form" in page
    assert "Submit for approval" not in page and "Save as a new version" not in page
    assert client.post(URL, data={"body": BODY + " again"}).status_code == 403  # an approver does not write
    assert client.post(f"/admin/templates/versions/{version.id}/submit").status_code == 403
    approved = client.post(f"/admin/templates/versions/{version.id}/approve", follow_redirects=True)
    text = approved.get_data(as_text=True)
    assert "Version 1 approved: customers receive it from now on." in text
    assert "Approved by Abe Approver" in text and "in use" in text
    assert _version().status == TemplateStatus.APPROVED and "NEWWORDING" in _live()
    actions = list(db.session.scalars(sa.select(AuditEntry.action).where(AuditEntry.action.like("template.%"))
                                      .order_by(AuditEntry.id)))
    assert actions == ["template.saved", "template.version_submitted", "template.version_approved"]


def test_an_author_cannot_approve_their_own_version(client, app):
    create_user("ada@example.com", PASSWORD, ["author", "approver"], name="Ada Both")
    db.session.commit()
    _sign_in(client, "ada@example.com")
    client.post(URL, data={"body": BODY})
    version = _version()
    client.post(f"/admin/templates/versions/{version.id}/submit")
    page = client.get(URL).get_data(as_text=True)
    assert "You wrote this version; someone else approves it." in page and "approve-version-form" not in page
    refused = client.post(f"/admin/templates/versions/{version.id}/approve", follow_redirects=True)
    assert refused.status_code == 200
    assert ("You cannot approve your own version: someone else with the approver role must approve version 1."
            in refused.get_data(as_text=True))
    assert _version().status == TemplateStatus.PENDING_APPROVAL and "NEWWORDING" not in _live()
    client.post("/admin/profile/language", data={"locale": "es"})
    refresh()  # the test's app context is shared by its requests: forget the locale Flask-Babel kept from them
    spanish = client.post(f"/admin/templates/versions/{version.id}/approve", follow_redirects=True).get_data(True)
    assert "No puede aprobar su propia versión" in spanish


def test_a_rejected_version_says_why_and_never_goes_live(client, app):
    create_user("ana@example.com", PASSWORD, ["author"], name="Ana Author")
    create_user("abe@example.com", PASSWORD, ["approver"], name="Abe Approver")
    db.session.commit()
    _sign_in(client, "ana@example.com")
    client.post(URL, data={"body": BODY})
    version = _version()
    client.post(f"/admin/templates/versions/{version.id}/submit")
    _sign_in(client, "abe@example.com")
    empty = client.post(f"/admin/templates/versions/{version.id}/reject", data={"reason": " "},
                        follow_redirects=True)
    assert "Say why you reject this version." in empty.get_data(as_text=True)
    rejected = client.post(f"/admin/templates/versions/{version.id}/reject", data={"reason": "too pushy"},
                           follow_redirects=True).get_data(as_text=True)
    assert "Version 1 rejected: it will never be sent." in rejected
    assert "Rejected by Abe Approver" in rejected and "too pushy" in rejected and 'data-status="rejected"' in rejected
    late = client.post(f"/admin/templates/versions/{version.id}/approve", follow_redirects=True)
    assert "Version 1 is not waiting for approval." in late.get_data(as_text=True)
    assert _version().status == TemplateStatus.REJECTED and "NEWWORDING" not in _live()


def test_other_roles_get_403_for_every_review_step(client, app, auth):
    create_user("ana@example.com", PASSWORD, ["author"], name="Ana Author")
    db.session.commit()
    _sign_in(client, "ana@example.com")
    client.post(URL, data={"body": BODY})
    version = _version()
    for role in ("operator", "auditor"):
        client.get("/logout")
        auth.login(role)
        for step in ("submit", "approve", "reject"):
            assert client.post(f"/admin/templates/versions/{version.id}/{step}",
                               data={"reason": "x"}).status_code == 403, (role, step)
        assert client.post(URL, data={"body": BODY}).status_code == 403
    assert _version().status == TemplateStatus.DRAFT


def test_with_four_eyes_off_a_save_is_live_at_once(client, app):
    from app.settings import set_setting

    set_setting("policy_four_eyes", False, actor="admin@example.com")
    create_user("ana@example.com", PASSWORD, ["author"], name="Ana Author")
    db.session.commit()
    _sign_in(client, "ana@example.com")
    page = client.post(URL, data={"body": BODY}, follow_redirects=True).get_data(as_text=True)
    assert "Saved as version 1." in page and "It is a draft" not in page and 'id="template-waiting"' not in page
    assert _version().status == TemplateStatus.APPROVED and "NEWWORDING" in _live()
