"""The template editor starts from the live text customers receive; the list shows the built-ins; a locale an operator
sets by hand is marked so and kept."""

from __future__ import annotations

import html as html_lib
import re

import sqlalchemy as sa

from app.extensions import db
from app.ingest.customer_locale import follow_country
from app.messages.default_templates import DEFAULTS
from app.messages.templates_service import save_template
from app.models import Customer, MessageTemplate


def _textarea(page: str, name: str) -> str:
    found = re.search(rf'<textarea id="{name}" name="{name}"[^>]*>(.*?)</textarea>', page, re.S)
    assert found, page
    return html_lib.unescape(found.group(1))


def test_the_list_shows_every_built_in_until_it_is_customised(client, auth, app):
    auth.login("author")
    page = client.get("/admin/templates/").get_data(as_text=True)
    for name, channel, language in DEFAULTS:
        assert f'data-template="{name}/{channel}/{language}"' in page
    assert page.count("Customise") == len(DEFAULTS)
    save_template("reminder_short", "sms", "es_MX", body="{{ brand }}: {{ payment_link }} Baja: responda STOP",
                  four_eyes=False)
    page = client.get("/admin/templates/?channel=sms").get_data(as_text=True)
    assert 'data-template="reminder_short/sms/es_MX"' in page and 'data-template="reminder_short/sms/es"' not in page
    assert 'data-template="reminder_short/sms/en"' in page and 'data-template="payment_failed/email/en"' not in page


def test_the_editor_starts_from_the_live_built_in_text(client, auth, app):
    auth.login("author")
    page = client.get("/admin/templates/edit?name=final_notice&channel=email&locale=es").get_data(as_text=True)
    builtin = DEFAULTS[("final_notice", "email", "es")]
    assert _textarea(page, "body") == builtin.body
    assert f'value="{html_lib.escape(builtin.subject)}"' in page.replace("&#34;", "&quot;")
    assert 'id="template-origin"' in page and "built-in text customers receive now" in page
    sms = client.get("/admin/templates/edit?name=reminder_short&channel=sms&locale=es_MX").get_data(as_text=True)
    assert _textarea(sms, "body") == DEFAULTS[("reminder_short", "sms", "es")].body


def test_after_a_save_other_languages_still_start_from_their_built_in(client, auth, app):
    auth.login("author")
    url = "/admin/templates/edit?name=payment_failed&channel=email&locale=en"
    saved = client.post(url, data={"subject": "{{ brand }}: ours", "body": "Ours: {{ payment_link }}"})
    assert saved.status_code == 302
    english = client.get(url).get_data(as_text=True)
    assert _textarea(english, "body") == "Ours: {{ payment_link }}" and 'id="template-origin"' not in english
    spanish = client.get("/admin/templates/edit?name=payment_failed&channel=email&locale=es").get_data(as_text=True)
    assert _textarea(spanish, "body") == DEFAULTS[("payment_failed", "email", "es")].body
    template = db.session.scalar(sa.select(MessageTemplate).where(MessageTemplate.name == "payment_failed"))
    assert template.locale == "en" and [v.number for v in template.versions] == [1]


def test_a_name_without_a_built_in_starts_from_what_a_policy_naming_it_sends(client, auth, app):
    auth.login("author")
    page = client.get("/admin/templates/edit?name=winback&channel=sms&locale=en").get_data(as_text=True)
    assert _textarea(page, "body") == DEFAULTS[("payment_failed", "sms", "en")].body
    assert "There is no built-in text of this name" in page


def test_the_email_preview_shows_the_branded_html_with_its_pay_button(client, auth, app):
    auth.login("author")
    builtin = DEFAULTS[("payment_failed", "email", "es")]
    data = client.post("/admin/templates/preview", json={"channel": "email", "locale": "es", "subject": builtin.subject,
                                                          "body": builtin.body}).get_json()
    assert data["subject"].startswith("Su pago de 249,00") and "Pagar 249,00" in data["html"]
    sms = client.post("/admin/templates/preview", json={"channel": "sms", "locale": "es",
                                                        "body": DEFAULTS[("payment_failed", "sms", "es")].body})
    assert sms.get_json()["segments"] == 1 and "http://localhost/p/" in sms.get_json()["text"]


def test_a_locale_set_by_hand_in_the_admin_is_kept_when_the_country_changes(client, auth, world):
    auth.login("operator")
    response = client.post(f"/admin/customers/edit/?id={world.customer_id}",
                           data={"vip": "", "tags": "", "timezone_explicit": "", "locale": "es-us"})
    assert response.status_code == 302, response.get_data(as_text=True)
    db.session.expire_all()
    customer = db.session.get(Customer, world.customer_id)
    assert (customer.locale, customer.locale_source) == ("es_US", "manual")
    customer.country = "GB"
    follow_country(customer)
    assert customer.locale == "es_US"
    refused = client.post(f"/admin/customers/edit/?id={world.customer_id}",
                          data={"vip": "", "tags": "", "timezone_explicit": "", "locale": "klingon"})
    assert "“klingon” is not a language we know" in refused.get_data(as_text=True)
