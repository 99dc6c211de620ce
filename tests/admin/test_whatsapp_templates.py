"""WhatsApp template approval from the templates admin, against the WhatsApp simulator over real sockets: submit
(positional parameters + examples), Meta's review by webhook, refresh, and a send with the approved template."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from app.accounts.channel_accounts import save_channel_account
from app.channels.base import Channel, OutboundMessage, TemplateParam
from app.extensions import db
from app.messages.templates_service import save_template, whatsapp_body, whatsapp_parameters
from app.models import AuditEntry, MessageTemplate
from app.outbox.senders import senders_for
from sandbox.whatsapp.server import DEFAULT_PHONE_NUMBER_ID, DEFAULT_WABA_ID, WhatsAppSimulator
from tests.live_server import LiveServer

TOKEN = "EAAG_sim_token_for_templates_0042"
APP_SECRET = "sim-app-secret-templates-77"
BODY = ("Hi {{ customer.first_name }}, your payment of {{ amount }} did not go through. "
        "Pay here: {{ payment_link }}")


@pytest.fixture
def whatsapp(app):  # type: ignore[no-untyped-def]
    with LiveServer(app) as live, WhatsAppSimulator(token=TOKEN, app_secret=APP_SECRET,
                                                  webhook_url=f"{live.url}/hooks/whatsapp",
                                                  delays=(0.01, 0.02, 0.03), out_of_order=0) as sim:
        # the account is entered as an admin would: credentials encrypted in the database, none in the config
        app.config.update(WHATSAPP_TOKEN=None, WHATSAPP_APP_SECRET=None)
        save_channel_account("wa-sim", "whatsapp", settings={"phone_number_id": DEFAULT_PHONE_NUMBER_ID,
                                                             "waba_id": DEFAULT_WABA_ID, "api_url": f"{sim.url}/v21.0"},
                             credentials={"token": TOKEN, "app_secret": APP_SECRET}, actor="test")
        yield sim


def _template() -> MessageTemplate:
    version = save_template("card_declined", "whatsapp", "en_US", body=BODY, four_eyes=False)
    return db.session.get(MessageTemplate, version.template_id)


def test_a_body_becomes_positional_parameters_with_examples(app):
    converted = whatsapp_body(BODY + " Again: {{ amount }}")
    assert converted.text == ("Hi {{1}}, your payment of {{2}} did not go through. Pay here: {{3}} Again: {{2}}")
    assert converted.expressions == ("customer.first_name", "amount", "payment_link")
    assert converted.expressions == whatsapp_parameters(BODY)
    assert all(converted.examples) and converted.examples[1].startswith("$")


def test_submit_review_by_webhook_refresh_and_send(app, client, auth, whatsapp):
    template = _template()
    auth.login("author")
    page = client.get("/admin/templates/edit?name=card_declined&channel=whatsapp&locale=en_US").get_data(True)
    assert "Submit to WhatsApp" in page and "Refresh status" in page and "not submitted" in page

    response = client.post(f"/admin/templates/whatsapp/submit/{template.id}", follow_redirects=True)
    assert "Submitted to WhatsApp" in response.get_data(True)
    [stored] = whatsapp.templates.values()
    assert stored["name"] == "card_declined" and stored["language"] == "en_US" and stored["category"] == "UTILITY"
    [component] = stored["components"]
    assert component["text"].startswith("Hi {{1}}, your payment of {{2}}")
    assert len(component["example"]["body_text"][0]) == 3
    db.session.expire_all()
    assert db.session.get(MessageTemplate, template.id).whatsapp_status == "PENDING"
    db.session.commit()  # no open transaction while the webhook writes (SQLite)

    # Meta approves: the signed webhook (verified with the app secret from the database account) updates it
    whatsapp.review_template(stored["id"], "APPROVED")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        db.session.expire_all()
        status = db.session.get(MessageTemplate, template.id).whatsapp_status
        db.session.commit()
        if status == "APPROVED":
            break
        time.sleep(0.05)
    assert status == "APPROVED"

    # Meta pauses it and the webhook is lost: "Refresh status" asks the API
    with whatsapp._lock:
        whatsapp.templates[stored["id"]]["status"] = "PAUSED"
    response = client.post(f"/admin/templates/whatsapp/refresh/{template.id}", follow_redirects=True)
    assert "PAUSED" in response.get_data(True)
    db.session.expire_all()
    assert db.session.get(MessageTemplate, template.id).whatsapp_status == "PAUSED"
    actions = db.session.scalars(sa.select(AuditEntry.action).where(AuditEntry.target_type == "message_template"))
    assert {"template.whatsapp_submitted", "template.whatsapp_status"} <= set(actions)

    # approved again, a message goes with the parameters in the submitted order
    with whatsapp._lock:
        whatsapp.templates[stored["id"]]["status"] = "APPROVED"
    params = tuple(TemplateParam(text=v) for v in ("Ana", "$49.00", "https://pay.example/x"))
    assert len(params) == len(whatsapp_parameters(BODY))
    result = senders_for(app)["whatsapp"].send(OutboundMessage(
        channel=Channel.WHATSAPP, to="+15551234567", reference="m1", template_name="card_declined",
        template_language="en_US", template_params=params))
    assert result.accepted, result


def test_a_refused_submission_is_explained_and_nothing_changes(app, client, auth, whatsapp):
    template = _template()
    auth.login("author")
    client.post(f"/admin/templates/whatsapp/submit/{template.id}")
    again = client.post(f"/admin/templates/whatsapp/submit/{template.id}", follow_redirects=True).get_data(True)
    assert "WhatsApp refused the template" in again and "already exists" in again
    assert TOKEN not in again


def test_conditions_cannot_go_to_whatsapp_and_auditors_cannot_submit(app, client, auth, whatsapp):
    version = save_template("with_if", "whatsapp", "en_US",
                            body="Hi{% if customer.first_name %} {{ customer.first_name }}{% endif %}, pay: "
                                 "{{ payment_link }}", four_eyes=False)
    auth.login("admin")
    page = client.post(f"/admin/templates/whatsapp/submit/{version.template_id}", follow_redirects=True)
    assert "cannot hold conditions" in page.get_data(True) and not whatsapp.templates
    auth.logout()
    auth.login("auditor")
    assert client.post(f"/admin/templates/whatsapp/submit/{version.template_id}").status_code == 403
    assert client.post(f"/admin/templates/whatsapp/refresh/{version.template_id}").status_code == 403


def test_without_a_whatsapp_account_the_admin_is_told(app, client, auth):
    app.config.update(WHATSAPP_TOKEN=None)
    template = _template()
    auth.login("author")
    page = client.post(f"/admin/templates/whatsapp/submit/{template.id}", follow_redirects=True).get_data(True)
    assert "WhatsApp is not configured" in page
