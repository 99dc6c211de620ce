"""Every Flask-Admin create and edit form works as a browser submits it, with CSRF protection on (issue 13, point 2).

The forms are fetched, parsed and posted back whole (tests/admin/browserlike.py): the page decides which fields
and tokens travel, never the test. A form that is refused says why, next to the field or at the top.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry, ChannelAccount, Customer, GatewayAccount, User
from tests.admin.browserlike import field_errors, flashes, forms, sign_in, submit


@pytest.fixture
def browser_client(app):  # type: ignore[no-untyped-def]
    """A client of the app as production runs it: CSRFProtect checks every POST."""
    app.config["WTF_CSRF_ENABLED"] = True
    return app.test_client()


def _audit(action: str) -> list[AuditEntry]:
    return list(db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action)))


@pytest.mark.parametrize("url", ["/admin/users/new/", "/admin/gateway_accounts/new/", "/admin/channel_accounts/new/"])
def test_a_model_form_renders_one_csrf_token(browser_client, world, url):
    sign_in(browser_client, "admin")
    page = browser_client.get(url).get_data(as_text=True)
    form = next(f for f in forms(page) if f.method == "POST" and f.attrs.get("class") == "admin-form")
    assert len(form.values("csrf_token")) == 1


def test_an_admin_adds_a_teammate_with_roles(browser_client, world):
    sign_in(browser_client, "admin")
    page = browser_client.get("/admin/users/new/").get_data(as_text=True)
    form = next(f for f in forms(page) if f.attrs.get("class") == "admin-form")
    labels = dict(zip(form.options["roles"], _option_labels(page, "roles"), strict=True))
    roles = [value for value, label in labels.items() if label.split(":")[0] in ("author", "approver")]
    response = submit(browser_client, "/admin/users/new/", email="Teammate@Example.com", name="Tea Mate",
                      roles=roles, active=True, locale="es", password="a long enough secret")
    assert response.status_code == 302, flashes(response.get_data(as_text=True))
    db.session.expire_all()
    user = db.session.scalar(sa.select(User).where(User.email == "teammate@example.com"))
    assert user is not None and user.name == "Tea Mate" and user.check_password("a long enough secret")
    assert sorted(r.name for r in user.roles) == ["approver", "author"]
    assert _audit("users.create")


def test_an_operator_marks_a_vip_and_fixes_timezone_and_language(browser_client, world):
    customer_id = db.session.scalars(sa.select(Customer.id).where(Customer.vip.is_(False))).first()
    sign_in(browser_client, "operator")
    response = submit(browser_client, f"/admin/customers/edit/?id={customer_id}", vip=True,
                      timezone_explicit="Europe/Madrid", locale="es_ES")
    assert response.status_code == 302, flashes(response.get_data(as_text=True))
    db.session.expire_all()
    customer = db.session.get(Customer, customer_id)
    assert customer.vip and customer.timezone_explicit == "Europe/Madrid" and customer.locale == "es_ES"
    entry = _audit("customers.update")[-1]
    assert entry.target_id == str(customer_id) and "vip" in entry.details["changed"]


def test_gateway_and_channel_accounts_are_created_edited_and_deleted(browser_client, world):
    sign_in(browser_client, "admin")
    made = submit(browser_client, "/admin/gateway_accounts/new/", name="nmi-second", gateway="nmi",
                  security_key="sk_second_123456", enabled=True)
    assert made.status_code == 302, flashes(made.get_data(as_text=True))
    account = db.session.scalar(sa.select(GatewayAccount).where(GatewayAccount.name == "nmi-second"))
    assert account is not None
    edited = submit(browser_client, f"/admin/gateway_accounts/edit/?id={account.id}", enabled=False)
    assert edited.status_code == 302, flashes(edited.get_data(as_text=True))
    db.session.expire_all()
    assert db.session.get(GatewayAccount, account.id).enabled is False

    made = submit(browser_client, "/admin/channel_accounts/new/", name="twilio-main", channel="sms",
                  account_sid="AC123", from_number="+15005550006", auth_token="tok_abcdef123456", enabled=True)
    assert made.status_code == 302, flashes(made.get_data(as_text=True))
    channel = db.session.scalar(sa.select(ChannelAccount).where(ChannelAccount.name == "twilio-main"))
    assert channel is not None and channel.settings["from_number"] == "+15005550006"
    listing = browser_client.get("/admin/channel_accounts/").get_data(as_text=True)
    deleted = submit(browser_client, "/admin/channel_accounts/", containing="id",
                     form_index=_delete_form_index(listing, channel.id))
    assert deleted.status_code == 302
    db.session.expire_all()
    assert db.session.get(ChannelAccount, channel.id) is None


def test_a_refused_form_says_why_next_to_the_field(browser_client, world):
    sign_in(browser_client, "admin")
    response = submit(browser_client, "/admin/users/new/", email="", password="short")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    errors = field_errors(html)
    assert "email" in errors and errors["email"], errors
    assert "password" in errors and "10 characters" in errors["password"], errors
    assert not [f for f in flashes(html) if f.rstrip(".") in ("Failed to create record", "Failed to save record")]
    assert any("Not saved" in f for f in flashes(html)), flashes(html)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 1  # only the admin signed in


def test_an_expired_form_says_so(browser_client, world):
    sign_in(browser_client, "admin")
    page = browser_client.get("/admin/users/new/").get_data(as_text=True)
    form = next(f for f in forms(page) if f.attrs.get("class") == "admin-form")
    data = [(k, "stale" if k == "csrf_token" else v) for k, v in form.data(email="x@example.com",
                                                                         password="long enough pass")]
    from werkzeug.datastructures import MultiDict

    response = browser_client.post("/admin/users/new/", data=MultiDict(data))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "This form had expired" in page and "Nothing was saved" in page
    assert db.session.scalar(sa.select(User).where(User.email == "x@example.com")) is None


def _option_labels(html: str, select: str) -> list[str]:
    import re

    block = re.search(rf'<select[^>]*name="{select}"[^>]*>(.*?)</select>', html, flags=re.S)
    assert block, select
    return [re.sub(r"\s+", " ", text).strip() for text in re.findall(r"<option[^>]*>(.*?)</option>", block.group(1),
                                                                      flags=re.S)]


def _delete_form_index(html: str, row_id: int) -> int:
    candidates = [f for f in forms(html) if f.method == "POST" and f.values("id")]
    return next(n for n, f in enumerate(candidates) if f.values("id") == [str(row_id)])
