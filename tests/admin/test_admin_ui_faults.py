"""The smaller faults of issue 13, point 9: reprs in lists and pickers, "Failed payments" that listed sales and
refunds, an empty-looking Channel accounts page, a profile page that was Home, microsecond times without a zone."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry, User
from app.payments.money import format_minor
from tests.admin.browserlike import field_errors, sign_in, submit
from tests.builders import make_customer, make_transaction

REPR = re.compile(r"&lt;(Customer|Role|User|Transaction|RecoveryCase|GatewayAccount|ChannelAccount)\b|"
                  r"<(Customer|Role|User|Transaction) \w")


def test_lists_and_pickers_show_names_not_reprs(client, auth, world):
    auth.login("admin")
    pages = ["/admin/transactions/", "/admin/customers/", "/admin/users/", "/admin/users/new/",
             f"/admin/cases/details/?id={world.case.id}", "/admin/messages/", "/admin/gateway_accounts/",
             f"/admin/transactions/details/?id={world.case.transaction_id}"]
    for url in pages:
        page = client.get(url).get_data(as_text=True)
        assert not REPR.search(page), (url, REPR.search(page))
    customer = world.case.customer
    listing = client.get("/admin/transactions/").get_data(as_text=True)
    assert f"{customer.first_name} {customer.last_name} &lt;{customer.email}&gt;" in listing
    picker = client.get("/admin/users/new/").get_data(as_text=True)
    assert re.search(r"<option[^>]*>approver: approves and activates", picker)


def test_failed_payments_lists_failures_only(client, auth, world):
    customer = make_customer()
    sale = make_transaction(customer=customer, status="approved", gateway_transaction_id="SALE-1", decline_code=None)
    refund = make_transaction(customer=customer, status="refunded", gateway_transaction_id="REFUND-1",
                              decline_code=None)
    failed = make_transaction(customer=customer, gateway_transaction_id="FAILED-1")
    db.session.commit()
    auth.login("operator")
    listing = client.get("/admin/transactions/").get_data(as_text=True)
    assert "FAILED-1" in listing and "SALE-1" not in listing and "REFUND-1" not in listing
    details = client.get(f"/admin/transactions/details/?id={failed.id}")
    assert details.status_code == 200 and "$249.00" in details.get_data(as_text=True)  # not "24900" cents
    for other in (sale, refund):
        assert client.get(f"/admin/transactions/details/?id={other.id}").status_code == 302  # "no such record"
    exported = client.get("/admin/transactions/export/csv/").get_data(as_text=True)
    assert "FAILED-1" in exported and "SALE-1" not in exported and "REFUND-1" not in exported


def test_channel_accounts_name_the_channels_working_from_the_environment(app, client, auth):
    app.config.update(TWILIO_ACCOUNT_SID="AC123", TWILIO_AUTH_TOKEN="secret-token-123", TWILIO_FROM="+15005550006",
                      SMTP_URL="smtp://user:smtp-password@mail.example.com:587", MAIL_FROM="Shop <billing@shop.test>",
                      WHATSAPP_TOKEN=None, WHATSAPP_PHONE_NUMBER_ID=None)
    auth.login("admin")
    page = re.sub(r"\s+", " ", client.get("/admin/channel_accounts/").get_data(as_text=True))
    assert "SMS</strong>: Twilio from environment (TWILIO_*)" in page and "+15005550006" in page
    assert "Email</strong>: SMTP from environment (SMTP_URL, MAIL_FROM)" in page and "mail.example.com" in page
    assert "WhatsApp</strong>:" not in page
    assert "secret-token-123" not in page and "smtp-password" not in page
    from app.accounts.channel_accounts import save_channel_account

    save_channel_account("twilio-own", "sms", settings={"account_sid": "AC9", "from_number": "+15550001111"},
                         credentials={"auth_token": "tok-123456"}, actor="setup")
    page = client.get("/admin/channel_accounts/").get_data(as_text=True)
    assert "replaced by the enabled account “twilio-own”" in page


def test_the_profile_page_shows_who_and_saves_preferences(app, client):
    app.config["WTF_CSRF_ENABLED"] = True
    email = sign_in(client, ["operator", "auditor"], name="Olga Operator")
    page = client.get("/admin/profile/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Recovery at a glance" not in html
    assert email in html and "Olga Operator" in html and "operator" in html and "auditor" in html
    assert 'id="profile-link"' in html  # reachable from the user menu

    bad = submit(client, "/admin/profile/", containing="timezone",
                 timezone="Mars/Olympus")
    assert "not a time zone" in field_errors(bad.get_data(as_text=True))["timezone"]
    ok = submit(client, "/admin/profile/", containing="timezone", name="Olga O.", locale="es",
                timezone="Europe/Madrid")
    assert ok.status_code == 302
    user = db.session.scalar(sa.select(User).where(User.email == email))
    db.session.refresh(user)
    assert (user.name, user.locale, user.timezone) == ("Olga O.", "es", "Europe/Madrid")
    assert db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "user.profile_update")).details == {
        "changed": ["locale", "name", "timezone"]}


def test_a_person_changes_their_own_password(app, client):
    app.config["WTF_CSRF_ENABLED"] = True
    email = sign_in(client, "author")
    wrong = submit(client, "/admin/profile/", containing="current_password", current_password="not it",
                   password="a brand new secret", confirm="a brand new secret")
    assert "not your current password" in field_errors(wrong.get_data(as_text=True))["current_password"]
    short = submit(client, "/admin/profile/", containing="current_password", current_password="correct horse battery",
                   password="short", confirm="short")
    assert "10 characters" in field_errors(short.get_data(as_text=True))["password"]
    ok = submit(client, "/admin/profile/", containing="current_password", current_password="correct horse battery",
                password="a brand new secret", confirm="a brand new secret")
    assert ok.status_code == 302
    user = db.session.scalar(sa.select(User).where(User.email == email))
    db.session.refresh(user)
    assert user.check_password("a brand new secret")


def test_times_show_minutes_and_the_readers_zone(app, client, auth, world):
    from admin.ui import when

    moment = datetime(2026, 12, 6, 4, 31, 22, 123456, tzinfo=UTC)
    with app.test_request_context():
        assert when(moment).replace("\u202f", " ") == "Dec 6, 2026, 4:31 AM UTC"
        assert when(moment, "America/New_York").replace("\u202f", " ") == "Dec 5, 2026, 11:31 PM EST"
        assert when("2026-12-06T04:31:22Z").replace("\u202f", " ") == "Dec 6, 2026, 4:31 AM UTC"
    email = auth.login("auditor")
    listing = client.get("/admin/audit_log/").get_data(as_text=True)
    assert not re.search(r"\d\d:\d\d:\d\d\.\d{6}", listing) and " UTC" in listing
    user = db.session.scalar(sa.select(User).where(User.email == email))
    user.timezone = "Europe/Madrid"
    db.session.commit()
    listing = client.get("/admin/audit_log/").get_data(as_text=True)
    assert " CET" in listing and " UTC<" not in listing


def test_a_case_s_page_shows_money_as_money_and_names_every_field(client, auth, world):
    case = world.case
    case.recovered_amount_minor, case.recovered_via = case.amount_due_minor, "link"
    db.session.commit()
    auth.login("operator")
    page = client.get(f"/admin/cases/details/?id={case.id}").get_data(as_text=True)
    assert "Minor" not in page and "amount_due_minor" not in page  # not a database column's name
    assert '"steps"' not in page  # the plan's JSON is the timeline's business, not this page's
    for label in ("Amount due", "Recovered amount", "Recovered how", "Gateway transaction", "Policy version"):
        assert f">{label}<" in page, label
    money = format_minor(case.amount_due_minor, case.currency)
    assert page.count(money) == 2  # due, and recovered in full
    assert case.transaction.gateway_transaction_id in page
    assert re.search(r">Control group</b>\s*</td>\s*<td>\s*No\s*<", page)  # not Python's False
