import re

import pytest

from app.accounts.users import UserError, create_user


def test_anonymous_admin_is_sent_to_sign_in(client):
    response = client.get("/admin/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_every_admin_and_api_route_refuses_an_anonymous_visitor(app, client):
    checked = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(("/admin", "/api")) or "static" in rule.endpoint:
            continue
        url = re.sub(r"<(?:[^:>]+:)?([^>]+)>", "1", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(url, method=method)
            checked += 1
            assert response.status_code in (302, 401), f"{method} {url} gave {response.status_code}"
            if response.status_code == 302:
                assert "/login" in response.headers["Location"]
    assert checked > 20


def test_sign_in_and_out(client, auth):
    auth.login("operator")
    home = client.get("/admin/")
    assert home.status_code == 200 and "Recovery at a glance" in home.get_data(as_text=True)
    auth.logout()
    assert client.get("/admin/").status_code == 302


def test_a_wrong_password_is_refused_and_repeated_failures_lock_the_account(client, app):
    create_user("ops@example.com", "correct horse battery", ["operator"])
    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        bad = client.post("/login", data={"email": "ops@example.com", "password": "wrong password!"})
        assert bad.status_code == 401
    locked = client.post("/login", data={"email": "ops@example.com", "password": "correct horse battery"})
    assert locked.status_code == 401 and "Too many failed attempts" in locked.get_data(as_text=True)


def test_sign_in_never_redirects_off_site(client, app):
    create_user("ops@example.com", "correct horse battery", ["operator"])
    response = client.post("/login?next=//evil.example/x",
                           data={"email": "ops@example.com", "password": "correct horse battery"})
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"


def test_auditor_reads_but_cannot_change(client, auth):
    auth.login("auditor")
    assert client.get("/admin/cases/").status_code == 200
    assert client.get("/admin/audit_log/").status_code == 200
    page = client.get("/admin/customers/").get_data(as_text=True)
    assert "/admin/customers/edit/" not in page


def test_operator_cannot_open_the_audit_log_or_gateway_secrets(client, auth):
    auth.login("operator")
    assert client.get("/admin/audit_log/").status_code == 403
    assert client.get("/admin/gateway_accounts/").status_code == 403


def test_user_creation_checks_its_input(app):
    with pytest.raises(UserError, match="unknown role"):
        create_user("a@example.com", "long enough pw", ["wizard"])
    with pytest.raises(UserError, match="at least 10"):
        create_user("a@example.com", "short", ["admin"])


def test_users_create_command(runner):
    result = runner.invoke(args=["users", "create", "--email", "root@example.com", "--role", "admin"],
                           input="a strong passphrase\na strong passphrase\n")
    assert result.exit_code == 0, result.output
    assert "created root@example.com" in result.output
