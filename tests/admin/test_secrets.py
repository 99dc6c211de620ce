"""Gateway secrets: stored encrypted, shown masked, never in a page, an export, the audit log or the logs."""

from __future__ import annotations

import logging

import sqlalchemy as sa

from app.accounts.secrets import decrypt_credentials
from app.extensions import db
from app.models import AuditEntry, GatewayAccount
from tests.admin.world import GATEWAY_SECRET, WEBHOOK_SECRET

NEW_SECRET = "sk_live_BRANDNEW_0000aaaa1111"


def _pages(client, account_id: int) -> str:  # type: ignore[no-untyped-def]
    urls = ["/admin/gateway_accounts/", f"/admin/gateway_accounts/details/?id={account_id}",
            f"/admin/gateway_accounts/edit/?id={account_id}", "/admin/audit_log/", "/admin/audit_log/export/csv/",
            "/admin/settings/", "/admin/audit_log/?search=gateway"]
    out = []
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        out.append(response.get_data(as_text=True))
    return "\n".join(out)


def test_secrets_are_encrypted_and_masked_everywhere(app, client, auth, world, caplog):
    caplog.set_level(logging.DEBUG)
    auth.login("admin")
    raw = db.session.scalar(sa.select(GatewayAccount.credentials_encrypted).where(GatewayAccount.name == "nmi-main"))
    assert GATEWAY_SECRET.encode() not in raw
    pages = _pages(client, world.gateway_account_id)
    for secret in (GATEWAY_SECRET, WEBHOOK_SECRET):
        assert secret not in pages and secret[:-4] not in pages
    assert "••••••••" + GATEWAY_SECRET[-4:] in pages  # masked: only the last four characters

    # a new key typed in the admin: stored encrypted, the other one kept, nothing in clear anywhere
    response = client.post(f"/admin/gateway_accounts/edit/?id={world.gateway_account_id}", data={
        "name": "nmi-main", "gateway": "nmi", "api_url": "https://secure.nmi.com/api", "enabled": "y",
        "security_key": NEW_SECRET, "webhook_signing_key": ""})
    assert response.status_code == 302
    db.session.expire_all()
    account = db.session.get(GatewayAccount, world.gateway_account_id)
    assert decrypt_credentials(app.config, account.credentials_encrypted) == {
        "security_key": NEW_SECRET, "webhook_signing_key": WEBHOOK_SECRET}
    pages = _pages(client, world.gateway_account_id)
    assert NEW_SECRET not in pages and NEW_SECRET[:-4] not in pages
    audit = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "gateway_account.update")).all()
    assert audit and all(NEW_SECRET not in str(e.details) for e in audit)
    assert NEW_SECRET not in caplog.text and GATEWAY_SECRET not in caplog.text


def test_a_new_account_from_the_admin(app, client, auth, world):
    auth.login("admin")
    response = client.post("/admin/gateway_accounts/new/", data={
        "name": "nmi-eu", "gateway": "nmi", "api_url": "", "enabled": "y", "security_key": NEW_SECRET})
    assert response.status_code == 302
    account = db.session.scalar(sa.select(GatewayAccount).where(GatewayAccount.name == "nmi-eu"))
    assert decrypt_credentials(app.config, account.credentials_encrypted) == {"security_key": NEW_SECRET}
    assert NEW_SECRET not in client.get("/admin/gateway_accounts/").get_data(as_text=True)


def test_the_auditor_sees_masked_secrets_only(client, auth, world):
    auth.login("auditor")
    page = client.get("/admin/gateway_accounts/").get_data(as_text=True)
    assert GATEWAY_SECRET not in page and GATEWAY_SECRET[-4:] in page
    assert client.get(f"/admin/gateway_accounts/edit/?id={world.gateway_account_id}").status_code == 403
