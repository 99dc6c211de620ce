"""Issue 16, point 5: Meta names a message template by name AND language. A review outcome for one language, sent by
the simulator as a signed ``message_template_status_update`` webhook, changes that language's template only."""

from __future__ import annotations

import time

import pytest

from app.accounts.channel_accounts import save_channel_account
from app.extensions import db
from app.messages.templates_service import save_template
from app.models import MessageTemplate
from sandbox.whatsapp.server import DEFAULT_PHONE_NUMBER_ID, DEFAULT_WABA_ID, WhatsAppSimulator
from tests.live_server import LiveServer

TOKEN = "EAAG_sim_token_for_languages_0042"
APP_SECRET = "sim-app-secret-languages-77"


@pytest.fixture
def whatsapp(app):  # type: ignore[no-untyped-def]
    with LiveServer(app) as live, WhatsAppSimulator(token=TOKEN, app_secret=APP_SECRET,
                                                  webhook_url=f"{live.url}/hooks/whatsapp") as sim:
        app.config.update(WHATSAPP_TOKEN=None, WHATSAPP_APP_SECRET=None)
        save_channel_account("wa-sim", "whatsapp", settings={"phone_number_id": DEFAULT_PHONE_NUMBER_ID,
                                                             "waba_id": DEFAULT_WABA_ID, "api_url": f"{sim.url}/v21.0"},
                             credentials={"token": TOKEN, "app_secret": APP_SECRET}, actor="test")
        yield sim


def _pending(locale: str, body: str) -> int:
    version = save_template("card_declined", "whatsapp", locale, body=body, four_eyes=False)
    template = db.session.get(MessageTemplate, version.template_id)
    template.whatsapp_name, template.whatsapp_status = "card_declined", "PENDING"
    db.session.commit()
    return template.id


def _status(template_id: int) -> str | None:
    db.session.expire_all()
    status = db.session.get(MessageTemplate, template_id).whatsapp_status
    db.session.commit()  # no open transaction while the webhook writes (SQLite)
    return status


def test_a_review_outcome_changes_only_the_template_in_its_language(app, whatsapp):
    english = _pending("en_US", "Hi {{ customer.first_name }}, pay here: {{ payment_link }}")
    spanish = _pending("es", "Hola {{ customer.first_name }}, pague aquí: {{ payment_link }}")
    en = whatsapp.add_template("card_declined", "en_US", body="Hi {{1}}, pay here: {{2}}", status="PENDING")
    es = whatsapp.add_template("card_declined", "es", body="Hola {{1}}, pague aquí: {{2}}", status="PENDING")

    whatsapp.review_template(es["id"], "REJECTED", "INVALID_FORMAT")
    deadline = time.monotonic() + 10
    while _status(spanish) != "REJECTED" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _status(spanish) == "REJECTED"
    assert _status(english) == "PENDING"  # same name, another language: not this webhook's template

    whatsapp.review_template(en["id"], "APPROVED")
    deadline = time.monotonic() + 10
    while _status(english) != "APPROVED" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (_status(english), _status(spanish)) == ("APPROVED", "REJECTED")
