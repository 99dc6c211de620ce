"""The demo control page: admins only, in the demo only (elsewhere its URLs do not exist); bad input is refused
field by field; a failure goes the real way (NMI simulator, fetch, plan) and moving the clock sends the next step."""

from __future__ import annotations

from html import unescape
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.accounts.users import create_user
from app.extensions import db
from app.models import AuditEntry, OutboxMessage, RecoveryCase, Transaction
from sandbox.nmi.server import NmiSimulator
from tests.providers import ChannelSimulators

PASSWORD = "correct horse battery"
STANDARD = (Path(__file__).resolve().parents[2] / "examples" / "policies" / "standard.policy").read_text()
LUCIA = {"customer": "new", "name": "Lucía García", "email": "lucia@example.com", "phone": "+34 612 345 678",
         "country": "ES", "amount": "49.00", "currency": "", "product_type": "subscription", "decline_code": "202"}


@pytest.fixture
def demo_app(app, database_url):
    from app import create_app
    from config import TestingConfig

    demo = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=database_url, DEMO_MODE=True,
                      SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True} if database_url.startswith("mysql") else {})
    with demo.app_context():
        yield demo
    with demo.app_context():
        db.engine.dispose()


def sign_in(client, role: str) -> None:
    email = f"{role}@demo.example"
    create_user(email, PASSWORD, [role])
    assert client.post("/login", data={"email": email, "password": PASSWORD}).status_code == 302


@pytest.fixture
def admin_client(demo_app):
    client = demo_app.test_client()
    sign_in(client, "admin")
    return client


def test_outside_the_demo_the_page_does_not_exist(app, client, auth):
    auth.login("admin")
    assert client.get("/admin/demo/").status_code == 404
    assert client.post("/admin/demo/fail", data=LUCIA).status_code == 404
    assert client.post("/admin/demo/clock", data={"step": "day"}).status_code == 404
    assert "Demo control" not in client.get("/admin/").get_data(as_text=True)


def test_in_the_demo_only_admins_may_use_it(demo_app):
    anonymous = demo_app.test_client()
    assert "/login" in anonymous.get("/admin/demo/").headers["Location"]
    for role in ("operator", "author", "approver", "auditor"):
        client = demo_app.test_client()
        sign_in(client, role)
        assert client.get("/admin/demo/").status_code == 403, role
        assert client.post("/admin/demo/fail", data=LUCIA).status_code == 403, role
        assert client.post("/admin/demo/clock", data={"step": "day"}).status_code == 403, role
        assert "Demo control" not in client.get("/admin/").get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Transaction)) == 0
    admin = demo_app.test_client()
    sign_in(admin, "admin")
    assert admin.get("/admin/demo/").status_code == 200
    menu = admin.get("/admin/").get_data(as_text=True)
    assert menu.index("Demo control") < menu.index("Policies")  # first after Home


@pytest.mark.parametrize(("changes", "field", "says"), [
    ({"country": "XX"}, "country", "“XX” is not a country"),
    ({"country": "Spain"}, "country", "is not a country"),
    ({"amount": "-5"}, "amount", "above zero"),
    ({"amount": "0"}, "amount", "above zero"),
    ({"amount": "12.345"}, "amount", "at most two decimals"),
    ({"amount": "lots"}, "amount", "above zero"),
    ({"email": "lucia.example.com"}, "email", "email address"),
    ({"name": " "}, "name", "customer's name"),
    ({"phone": "12"}, "phone", "valid mobile number"),
    ({"currency": "XYZ"}, "currency", "Pick one of"),
    ({"product_type": "car"}, "product_type", "what was sold"),
    ({"decline_code": "999"}, "decline_code", "why the bank declined"),
    ({"customer": "999999"}, "customer", "no such customer"),
])
def test_bad_input_is_refused_at_its_field_and_nothing_happens(admin_client, changes, field, says):
    response = admin_client.post("/admin/demo/fail", data={**LUCIA, **changes})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert f'<div class="invalid-feedback" id="error-{field}">' in page
    error = unescape(page.split(f'id="error-{field}">', 1)[1].split("</div>", 1)[0])
    assert says in error
    kept = "lucia@example.com" if field != "email" else "Lucía García"
    assert f'name="{field}"' in page and f'value="{kept}"' in page  # what was typed is kept
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Transaction)) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)
                             .where(AuditEntry.action.like("demo.%"))) == 0


def test_moving_the_clock_with_nothing_scheduled_says_so(admin_client):
    page = admin_client.post("/admin/demo/clock", data={"step": "next"}, follow_redirects=True)
    assert "Nothing is scheduled yet" in page.get_data(as_text=True)
    page = admin_client.post("/admin/demo/clock", data={"step": "morning", "zone": "Mars/Base"},
                             follow_redirects=True)
    assert "not a time zone" in page.get_data(as_text=True)


@pytest.fixture
def world(demo_app):
    from app.accounts.gateway_accounts import save_account
    from app.recovery.policies import activate_text

    channels = ChannelSimulators().start()
    nmi = NmiSimulator(seed=13).start()
    try:
        channels.configure(demo_app, public_url="http://127.0.0.1:5000")
        demo_app.config["DEMO_INBOXES"] = {"email": f"{channels.smtp.control_url}/inbox",
                                           "sms": f"{channels.twilio.url}/inbox",
                                           "whatsapp": f"{channels.whatsapp.url}/inbox"}
        save_account("nmi-demo", "nmi", api_url=f"{nmi.url}/api", actor="test",
                     credentials={"security_key": nmi.security_key})
        activate_text("standard", STANDARD, actor=None, note="the demo's policy")
        db.session.commit()
        yield nmi, channels
    finally:
        nmi.stop()
        channels.stop()


def fail(client, **changes) -> int:
    """Fail a payment from the page; a case the policy keeps in its control group is tried again. The case's id:
    a request that dispatches ends the session the test shares with it, so objects are read afresh after it."""
    for _ in range(4):
        response = client.post("/admin/demo/fail", data={**LUCIA, **changes})
        assert response.status_code == 302, response.get_data(as_text=True)[:3000]
        case_id = int(response.headers["Location"].rsplit("#case-", 1)[1])
        if not db.session.get(RecoveryCase, case_id).holdout:
            return case_id
    raise AssertionError("four cases in a row in the control group")


def test_a_spanish_customers_failure_goes_the_real_way_and_the_clock_sends_its_first_step(admin_client, world):
    nmi, channels = world
    case_id = fail(admin_client)
    case = db.session.get(RecoveryCase, case_id)
    [sale] = [t for t in nmi.transactions if t.transaction_id == case.transaction.gateway_transaction_id]
    assert sale.condition == "failed" and sale.amount == "49.00" and sale.currency == "EUR"
    assert sale.order_id.startswith("DEMO-") and sale.customer.customer_vault_id
    customer = case.customer
    assert (customer.first_name, customer.last_name, customer.country) == ("Lucía", "García", "ES")
    assert customer.phone_e164 == "+34612345678" and customer.locale.startswith("es")
    assert case.transaction.product_type == "subscription" and case.transaction.decline_reason == "insufficient_funds"
    assert case.plan and case.state == "open"
    [audit] = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "demo.payment_failed")).all()
    assert audit.actor == "admin@demo.example" and audit.target_id == str(case.id)
    page = admin_client.get("/admin/demo/").get_data(as_text=True)
    assert f'id="case-{case.id}"' in page and "Lucía García" in page
    assert channels.smtp.received() == []  # the standard policy waits two hours at least

    moved = admin_client.post("/admin/demo/clock", data={"step": "next"}, follow_redirects=True)
    text = moved.get_data(as_text=True)
    assert "Business time is now" in text and "Dispatch sent 1 message(s)" in text
    [mail] = channels.smtp.received("lucia@example.com")
    assert "/pay/" in str(mail)
    inbox = f'{channels.smtp.control_url}/inbox/lucia%40example.com'
    assert f'href="{inbox}"' in text
    first = db.session.scalar(sa.select(OutboxMessage).where(OutboxMessage.case_id == case_id,
                                                             OutboxMessage.step_n == 1))
    assert first.state == "sent"
    clock_moves = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "demo.clock_advanced")).all()
    assert [e.actor for e in clock_moves] == ["admin@demo.example"]


def test_a_known_customer_can_fail_again(admin_client, world):
    first_id = fail(admin_client)
    customer_id = db.session.get(RecoveryCase, first_id).customer_id
    again_id = fail(admin_client, customer=str(customer_id), name="", email="", phone="", country="",
                    amount="2500.00", product_type="one_time", decline_code="201")
    first, again = db.session.get(RecoveryCase, first_id), db.session.get(RecoveryCase, again_id)
    assert again.id != first.id and again.customer_id == first.customer_id
    assert again.transaction.amount_minor == 250000 and again.transaction.currency == "EUR"
    assert again.transaction.decline_code == "201"


def test_hour_day_and_morning_move_the_business_clock(admin_client, demo_app):
    from datetime import UTC, datetime, timedelta

    from app import clock

    admin_client.post("/admin/demo/clock", data={"step": "hour"})
    admin_client.post("/admin/demo/clock", data={"step": "day"})
    assert abs(clock.offset() - timedelta(hours=25)) < timedelta(seconds=5)
    admin_client.post("/admin/demo/clock", data={"step": "morning", "zone": "Europe/Madrid"})
    local = clock.business_now().astimezone(clock.zone("Europe/Madrid"))
    assert local.weekday() < 5 and (local.hour, local.minute) == (9, 0)
    assert clock.business_now() > datetime.now(UTC) + timedelta(hours=25)
