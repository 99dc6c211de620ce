"""Roles: an auditor opens everything and changes nothing (403, never a redirect); each role changes only its part."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from app.accounts.users import create_user
from app.extensions import db
from app.models import AuditEntry, Experiment, Policy, PolicyVersion
from app.recovery.policies import save_draft, submit_draft
from app.settings import set_setting

#: POST endpoints that change nothing a business cares about: checks, previews, simulations, one's own language
HARMLESS_POSTS = {"policies.check", "policies.simulate", "profile.language",
                  "profile.preferences", "profile.password"}
CHANGE_VIEWS = ("create_view", "edit_view", "delete_view", "action_view", "ajax_update")
#: pages for admins only (an auditor gets 403 there: tests/admin/test_queues.py)
ADMIN_ONLY = {"queues.index"}


def _experiment_id() -> int:
    """An experiment for the pages that show one (the world's policy runs none: a row as activation would make)."""
    row = db.session.scalar(sa.select(Experiment))
    if row is None:
        version = db.session.get(PolicyVersion, db.session.scalar(sa.select(sa.func.min(PolicyVersion.id))))
        row = Experiment(policy_id=version.policy_id, name="subject line", salt="s", control="control",
                         arms=[{"name": "control", "weight": "50"}, {"name": "short", "weight": "50"}],
                         guardrails=[], status="running", planned_units=400, started_version_id=version.id,
                         stopped_arms=[])
        db.session.add(row)
        db.session.commit()
    return row.id


def _url(rule, world) -> str:  # type: ignore[no-untyped-def]
    values = {"experiment_id": _experiment_id(),
              "case_id": world.case.id, "task_id": world.escalation.id, "name": "standard", "key": "contact_windows",
              "version_id": db.session.scalar(sa.select(sa.func.min(PolicyVersion.id))), "export_type": "csv",
              "filename": "x", "kind": "kpis", "fmt": "csv"}
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: str(values.get(m.group(1), 1)), rule.rule)


def _admin_rules(app):  # type: ignore[no-untyped-def]
    return [r for r in app.url_map.iter_rules() if r.rule.startswith("/admin") and "static" not in r.endpoint]


def test_auditor_opens_every_page(app, client, auth, world):
    auth.login("auditor")
    opened = 0
    for rule in _admin_rules(app):
        if "GET" not in rule.methods or rule.endpoint.endswith(CHANGE_VIEWS) or "ajax" in rule.rule:
            continue
        url = _url(rule, world)
        if rule.endpoint in ADMIN_ONLY:
            assert client.get(url).status_code == 403, url
            continue
        if rule.endpoint.endswith("details_view"):
            url += f"?id={world.customer_id if 'customers' in rule.endpoint else 1}"
        response = client.get(url)
        assert response.status_code in (200, 302), f"GET {url} gave {response.status_code}"
        if response.status_code == 302:  # only Flask-Admin's own hops (export not offered, profile home)
            assert "/login" not in response.headers["Location"], url
        opened += 1
    assert opened > 25


def test_auditor_gets_403_for_every_change(app, client, auth, world):
    auth.login("auditor")
    before = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry))
    tried = 0
    for rule in _admin_rules(app):
        url = _url(rule, world)
        if rule.endpoint.endswith(CHANGE_VIEWS):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                response = client.open(url + "?id=1", method=method, data={"name": "x", "vip": "y"})
                assert response.status_code == 403, f"{method} {url} gave {response.status_code}"
                tried += 1
        elif "POST" in rule.methods and rule.endpoint not in HARMLESS_POSTS:
            response = client.post(url, data={"source": "policy \"x\"\nend\n", "reason": "r", "note": "n",
                                              "value": "true", "user_id": "1", "to_number": "1", "name": "x"})
            assert response.status_code == 403, f"POST {url} gave {response.status_code}"
            assert "Nothing was changed" in response.get_data(as_text=True)
            tried += 1
    assert tried > 20
    db.session.expire_all()
    # nothing was written: the only new audit entries are the auditor's own sign-in
    new = db.session.scalars(sa.select(AuditEntry.action).where(AuditEntry.id > 0).order_by(AuditEntry.id)
                             .offset(before)).all()
    assert set(new) <= {"user.sign_in"}


def test_change_buttons_are_not_offered_to_an_auditor(client, auth, world):
    auth.login("auditor")
    for url in ("/admin/policies/edit/standard", "/admin/policies/history/standard", "/admin/escalations/",
                "/admin/settings/", "/admin/gateway_accounts/", "/admin/users/"):
        page = client.get(url).get_data(as_text=True)
        assert 'id="save-draft"' not in page and "approve-form" not in page and "/assign" not in page, url
        assert "/new/" not in page and "/edit/?" not in page, url
    assert "readonly" in client.get("/admin/policies/edit/standard").get_data(as_text=True)


@pytest.mark.parametrize(("role", "url", "allowed"), [
    ("operator", "/admin/policies/edit/standard", False),
    ("approver", "/admin/policies/edit/standard", False),
    ("author", "/admin/policies/edit/standard", True),
    ("author", "/admin/settings/policy_four_eyes", False),
    ("operator", "/admin/settings/policy_four_eyes", False),
    ("admin", "/admin/settings/policy_four_eyes", True),
    ("author", "/admin/escalations/1/note", False),
    ("operator", "/admin/escalations/1/note", True),
])
def test_each_role_changes_only_its_part(client, auth, world, role, url, allowed):
    auth.login(role)
    url = url.replace("/1/", f"/{world.escalation.id}/")
    response = client.post(url, data={"source": "policy \"standard\"\nend\n", "value": "true", "note": "called"})
    assert (response.status_code != 403) is allowed, response.status_code


def test_only_approvers_approve_and_activate(client, auth, world):
    author = create_user("writer@example.com", "correct horse battery", ["author"])
    save_draft("standard", world_policy_text(), actor=author)
    version = submit_draft("standard", actor=author, note="earlier SMS")
    auth.login("author")
    assert client.post(f"/admin/policies/approve/{version.id}", data={"reason": "fine"}).status_code == 403
    assert client.post(f"/admin/policies/activate/{version.id}").status_code == 403
    auth.logout()
    auth.login("approver")
    assert client.post(f"/admin/policies/approve/{version.id}", data={"reason": "fine"}).status_code == 302
    db.session.expire_all()
    assert db.session.get(PolicyVersion, version.id).status == "approved"


def test_four_eyes_refuses_approving_your_own_version_unless_turned_off(client, app):
    both = create_user("both@example.com", "correct horse battery", ["author", "approver"])
    save_draft("standard", world_policy_text(), actor=both)
    version = submit_draft("standard", actor=both)
    client.post("/login", data={"email": "both@example.com", "password": "correct horse battery"})
    page = client.post(f"/admin/policies/approve/{version.id}", data={"reason": "mine"}, follow_redirects=True)
    assert "someone other than its author" in page.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(PolicyVersion, version.id).status == "pending_approval"
    set_setting("policy_four_eyes", False, actor="admin@example.com")
    db.session.commit()
    client.post(f"/admin/policies/approve/{version.id}", data={"reason": "small team"})
    db.session.expire_all()
    assert db.session.get(PolicyVersion, version.id).status == "approved"


def test_every_form_needs_a_csrf_token(app, database_url):
    from app import create_app
    from config import TestingConfig

    guarded = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=database_url, WTF_CSRF_ENABLED=True)
    with guarded.app_context():
        create_user("csrf@example.com", "correct horse battery", ["admin", "author"])
        client = guarded.test_client()
        page = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        assert client.post("/login", data={"email": "csrf@example.com", "password": "correct horse battery",
                                           "csrf_token": token}).status_code == 302
        assert client.post("/admin/policies/new", data={"name": "nocsrf"}).status_code == 400
        assert client.post("/admin/policies/check", json={"source": ""}).status_code == 400
        assert client.post("/admin/gateway_accounts/new/", data={"name": "x", "gateway": "nmi"}).status_code == 400
        assert db.session.scalar(sa.select(Policy).where(Policy.name == "nocsrf")) is None
        page = client.get("/admin/policies/").get_data(as_text=True)
        token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)
        ok = client.post("/admin/policies/check", json={"source": ""}, headers={"X-CSRFToken": token})
        assert ok.status_code == 200


def test_session_cookie_flags(app, client):
    assert app.config["SESSION_COOKIE_HTTPONLY"] and app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    from config import ProductionConfig

    assert ProductionConfig.SESSION_COOKIE_SECURE is True


def world_policy_text() -> str:
    from tests.admin.world import STANDARD

    return STANDARD.replace("step after 1d via sms, whatsapp", "step after 12h via sms, whatsapp")
