"""Issue 15, low finding: an admin could point a stored secret at any URL without typing it again: change an
account's API URL and the next call carries the stored security key or token to that address (a way to read a
secret the admin pages never show, and a request forgery aimed wherever one likes). A new address needs the secret
typed again; everything else about an account still saves without retyping."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.accounts.channel_accounts import ChannelAccountError, credentials_of, save_channel_account
from app.models import ChannelAccount, GatewayAccount
from tests.admin.browserlike import flashes, sign_in, submit

SMS = {"account_sid": "AC123", "from_number": "+15005550006", "api_url": "https://api.twilio.com"}


@pytest.fixture
def browser_client(app):  # type: ignore[no-untyped-def]
    app.config["WTF_CSRF_ENABLED"] = True
    return app.test_client()


def test_a_channel_account_moved_to_a_new_api_url_needs_its_token_again(app, db):
    account = save_channel_account("twilio", "sms", settings=SMS, credentials={"auth_token": "tok_stored_123"})
    with pytest.raises(ChannelAccountError, match="type auth_token again"):
        save_channel_account("twilio", "sms", settings={**SMS, "api_url": "https://attacker.example"},
                             credentials={}, account=account)
    db.session.rollback()
    assert db.session.get(ChannelAccount, account.id).settings["api_url"] == "https://api.twilio.com"
    save_channel_account("twilio", "sms", settings={**SMS, "from_number": "+15005550007"}, credentials={},
                         account=account)  # another change keeps the stored token
    moved = save_channel_account("twilio", "sms", settings={**SMS, "api_url": "https://eu.twilio.example"},
                                 credentials={"auth_token": "tok_typed_again"}, account=account)
    assert credentials_of(moved)["auth_token"] == "tok_typed_again"


def test_a_gateway_account_moved_to_a_new_api_url_needs_its_key_again(browser_client, db):
    sign_in(browser_client, "admin")
    made = submit(browser_client, "/admin/gateway_accounts/new/", name="nmi-moved", gateway="nmi",
                  api_url="https://secure.nmi.com/api", security_key="sk_stored_123456", enabled=True)
    assert made.status_code == 302, flashes(made.get_data(as_text=True))
    account = db.session.scalar(sa.select(GatewayAccount).where(GatewayAccount.name == "nmi-moved"))

    refused = submit(browser_client, f"/admin/gateway_accounts/edit/?id={account.id}",
                     api_url="https://attacker.example/api")
    assert "type the security key again" in " ".join(flashes(refused.get_data(as_text=True)))
    db.session.expire_all()
    assert db.session.get(GatewayAccount, account.id).api_url == "https://secure.nmi.com/api"

    kept = submit(browser_client, f"/admin/gateway_accounts/edit/?id={account.id}", enabled=False)
    assert kept.status_code == 302, flashes(kept.get_data(as_text=True))
    moved = submit(browser_client, f"/admin/gateway_accounts/edit/?id={account.id}",
                   api_url="https://gw2.nmi.example/api", security_key="sk_typed_again_1")
    assert moved.status_code == 302, flashes(moved.get_data(as_text=True))
    db.session.expire_all()
    assert db.session.get(GatewayAccount, account.id).api_url == "https://gw2.nmi.example/api"
