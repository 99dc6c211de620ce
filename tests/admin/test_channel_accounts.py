"""Channel credentials: entered in the admin, stored encrypted, shown masked, audited without values, and used by
the senders before the environment's."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from app.accounts.channel_accounts import ChannelAccountError, save_channel_account
from app.accounts.secrets import decrypt_credentials
from app.extensions import db
from app.models import AuditEntry, ChannelAccount
from app.outbox.senders import reset_senders, senders_for

WA_TOKEN = "EAAG_WHATSAPP_TOKEN_SECRET_0001abcd"
WA_APP_SECRET = "wa_app_secret_SECRET_7788"
TWILIO_TOKEN = "twilio_auth_TOKEN_SECRET_5566"
SMTP_URL = "smtp://mailer:SMTP_PASSWORD_SECRET@127.0.0.1:2525"
SECRETS = (WA_TOKEN, WA_APP_SECRET, TWILIO_TOKEN, "SMTP_PASSWORD_SECRET")


def _pages(client, account_id: int) -> str:  # type: ignore[no-untyped-def]
    urls = ["/admin/channel_accounts/", f"/admin/channel_accounts/details/?id={account_id}",
            f"/admin/channel_accounts/edit/?id={account_id}", "/admin/audit_log/", "/admin/audit_log/export/csv/",
            "/admin/audit_log/?search=channel"]
    out = []
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        out.append(response.get_data(as_text=True))
    return "\n".join(out)


def _whatsapp_form(**overrides: str) -> dict[str, str]:
    data = {"name": "wa-main", "channel": "whatsapp", "enabled": "y", "phone_number_id": "106540352242922",
            "waba_id": "102290129340398", "api_url": "http://127.0.0.1:9/v21.0", "token": WA_TOKEN,
            "app_secret": WA_APP_SECRET, "verify_token": ""}
    data.update(overrides)
    return data


def test_an_admin_enters_whatsapp_credentials_stored_encrypted_and_masked(app, client, auth, caplog):
    caplog.set_level(logging.DEBUG)
    auth.login("admin")
    assert client.post("/admin/channel_accounts/new/", data=_whatsapp_form()).status_code == 302
    account = db.session.scalar(sa.select(ChannelAccount).where(ChannelAccount.name == "wa-main"))
    assert account is not None and account.channel == "whatsapp" and account.enabled
    assert WA_TOKEN.encode() not in account.credentials_encrypted
    assert decrypt_credentials(app.config, account.credentials_encrypted) == {"token": WA_TOKEN,
                                                                              "app_secret": WA_APP_SECRET}
    assert account.settings == {"phone_number_id": "106540352242922", "waba_id": "102290129340398",
                                "api_url": "http://127.0.0.1:9/v21.0"}
    pages = _pages(client, account.id)
    for secret in (WA_TOKEN, WA_APP_SECRET):
        assert secret not in pages and secret[:-4] not in pages
    assert "••••••••" + WA_TOKEN[-4:] in pages

    # saved again with the secret fields left empty: the stored secrets stay
    response = client.post(f"/admin/channel_accounts/edit/?id={account.id}",
                           data=_whatsapp_form(token="", app_secret="", phone_number_id="999"))
    assert response.status_code == 302
    db.session.expire_all()
    account = db.session.get(ChannelAccount, account.id)
    assert decrypt_credentials(app.config, account.credentials_encrypted)["token"] == WA_TOKEN
    assert account.settings["phone_number_id"] == "999"

    entries = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.target_type == "channel_account")
                                 .order_by(AuditEntry.id)).all()
    assert [e.action for e in entries] == ["channel_account.create", "channel_account.update"]
    assert entries[0].details["secrets_changed"] == ["app_secret", "token"]
    assert entries[1].details["secrets_changed"] == [] and entries[1].details["settings_changed"] == [
        "phone_number_id"]
    assert not any(s in str(e.details) for e in entries for s in (*SECRETS, "999", "106540352242922"))
    assert not any(s in caplog.text for s in SECRETS)


def test_only_admins_change_channel_accounts_and_auditors_see_them_masked(app, client, auth):
    save_channel_account("sms-main", "sms", settings={"account_sid": "AC123", "from_number": "+15550001111"},
                         credentials={"auth_token": TWILIO_TOKEN}, actor="test")
    account_id = db.session.scalar(sa.select(ChannelAccount.id))
    auth.login("auditor")
    page = client.get("/admin/channel_accounts/").get_data(as_text=True)
    assert TWILIO_TOKEN not in page and TWILIO_TOKEN[-4:] in page and "AC123" in page
    assert client.get(f"/admin/channel_accounts/edit/?id={account_id}").status_code == 403
    assert client.post("/admin/channel_accounts/new/", data=_whatsapp_form()).status_code == 403
    assert client.post("/admin/channel_accounts/delete/", data={"id": account_id}).status_code == 403
    auth.logout()
    auth.login("author")
    assert client.get("/admin/channel_accounts/").status_code == 403
    auth.logout()
    assert client.get("/admin/channel_accounts/").status_code == 302  # anonymous: to the sign-in page


def test_a_deleted_account_is_audited_and_the_environment_takes_over(app, client, auth):
    app.config.update(TWILIO_ACCOUNT_SID="AC_ENV", TWILIO_AUTH_TOKEN="env-token", TWILIO_FROM="+15550009999")
    reset_senders(app)
    save_channel_account("sms-main", "sms", settings={"account_sid": "AC_DB", "from_number": "+15550001111"},
                         credentials={"auth_token": TWILIO_TOKEN}, actor="test")
    assert senders_for(app)["sms"].account_sid == "AC_DB"
    account_id = db.session.scalar(sa.select(ChannelAccount.id))
    auth.login("admin")
    assert client.post("/admin/channel_accounts/delete/", data={"id": account_id}).status_code == 302
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ChannelAccount)) == 0
    assert db.session.scalar(sa.select(AuditEntry.action).order_by(AuditEntry.id.desc()).limit(1)) == (
        "channel_account.delete")
    assert senders_for(app)["sms"].account_sid == "AC_ENV"


def test_senders_use_the_enabled_database_account_first_then_the_environment(app):
    app.config.update(WHATSAPP_TOKEN="env-token", WHATSAPP_PHONE_NUMBER_ID="env-phone",
                      WHATSAPP_API_URL="http://127.0.0.1:9/v21.0", SMTP_URL=None, TWILIO_ACCOUNT_SID=None)
    reset_senders(app)
    assert senders_for(app)["whatsapp"].token == "env-token"
    assert "sms" not in senders_for(app) and "email" not in senders_for(app)

    save_channel_account("wa-main", "whatsapp", settings={"phone_number_id": "db-phone", "waba_id": "waba-1"},
                         credentials={"token": WA_TOKEN}, actor="test")
    save_channel_account("mail", "email", settings={"from_address": "Shop <billing@shop.example>"},
                         credentials={"smtp_url": SMTP_URL}, actor="test")
    senders = senders_for(app)  # saving reset the cache
    assert senders["whatsapp"].token == WA_TOKEN and senders["whatsapp"].phone_number_id == "db-phone"
    assert senders["whatsapp"].waba_id == "waba-1"
    assert senders["email"] is not None

    save_channel_account("wa-main", "whatsapp", settings={"phone_number_id": "db-phone"}, enabled=False,
                         actor="test")
    assert senders_for(app)["whatsapp"].token == "env-token"  # disabled: the environment's again


def test_another_process_notices_a_changed_account(app):
    """A worker's cache is reset by the accounts' stamp, not only by the saving process."""
    app.config.update(WHATSAPP_TOKEN="env-token", WHATSAPP_PHONE_NUMBER_ID="env-phone", SENDERS_RECHECK_SECONDS=0)
    reset_senders(app)
    assert senders_for(app)["whatsapp"].token == "env-token"
    cached = senders_for(app)
    assert senders_for(app) is cached  # unchanged accounts: the same senders
    from app.accounts.secrets import encrypt_credentials

    db.session.add(ChannelAccount(name="wa-other", channel="whatsapp", settings={"phone_number_id": "p2"},
                                  credentials_encrypted=encrypt_credentials(app.config, {"token": WA_TOKEN})))
    db.session.commit()  # as another process would: no reset_senders here
    assert senders_for(app)["whatsapp"].token == WA_TOKEN


def test_an_account_without_what_its_channel_needs_is_refused(app):
    with pytest.raises(ChannelAccountError, match="token"):
        save_channel_account("wa", "whatsapp", settings={"phone_number_id": "1"}, credentials={}, actor="test")
    db.session.rollback()
    with pytest.raises(ChannelAccountError, match="unknown channel"):
        save_channel_account("x", "pigeon", actor="test")
