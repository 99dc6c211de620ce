"""Which template a customer gets: the merchant's own overrides the built-in of the same name, channel and language
only; the built-ins stay known to policies (saving a template keeps every policy valid) and serve everything else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.messages.default_templates import DEFAULTS, LANGUAGES
from app.messages.templates_service import known_template_names, resolve_template, save_template
from app.recovery import policies

STANDARD = (Path(__file__).resolve().parents[2] / "examples" / "policies" / "standard.policy").read_text()
STANDARD_TEMPLATES = set(re.findall(r'template "([a-z_]+)"', STANDARD))


def _errors(source):
    return [d for d in policies.check_source(source) if d.is_error]


def test_the_standard_policy_names_only_built_in_templates_in_every_channel_and_language():
    assert STANDARD_TEMPLATES == {"payment_failed", "vip_personal", "vip_followup", "reminder_short", "final_notice"}
    for name in STANDARD_TEMPLATES:
        for channel in ("email", "sms", "whatsapp"):
            for language in LANGUAGES:
                assert (name, channel, language) in DEFAULTS, (name, channel, language)


def test_saving_a_template_keeps_every_policy_valid(app):
    assert _errors(STANDARD) == []
    save_template("payment_failed", "email", "en", subject="{{ brand }}: payment", body="Pay: {{ payment_link }}",
                  four_eyes=False)
    assert STANDARD_TEMPLATES <= known_template_names()
    assert _errors(STANDARD) == []  # was: every other built-in became "unknown template"
    assert policies.save_draft("standard", STANDARD, actor=None) == []
    assert policies.submit_draft("standard", actor=None, note="after a template was saved").number == 1
    misspelt = STANDARD.replace('template "final_notice"', 'template "final_notise"', 1)
    [error] = _errors(misspelt)
    assert 'unknown template "final_notise"' in error.message and "final_notice" in error.message


def test_a_saved_template_overrides_only_its_own_name_channel_and_language(app):
    save_template("reminder_short", "sms", "en", body="{{ brand }}: ours {{ payment_link }} Reply STOP to opt out",
                  four_eyes=False)
    assert resolve_template("reminder_short", "sms", "en_US").body.startswith("{{ brand }}: ours")
    assert resolve_template("reminder_short", "sms", "en_GB").body.startswith("{{ brand }}: ours")
    spanish = resolve_template("reminder_short", "sms", "es_MX")
    assert spanish == DEFAULTS[("reminder_short", "sms", "es")] and spanish.locale == "es"
    assert resolve_template("reminder_short", "email", "en_US") == DEFAULTS[("reminder_short", "email", "en")]
    assert resolve_template("payment_failed", "sms", "en_US") == DEFAULTS[("payment_failed", "sms", "en")]


def test_the_most_specific_saved_locale_wins_then_the_language(app):
    save_template("final_notice", "email", "es", subject="Aviso", body="General {{ payment_link }}", four_eyes=False)
    save_template("final_notice", "email", "es_MX", subject="Aviso", body="México {{ payment_link }}", four_eyes=False)
    assert resolve_template("final_notice", "email", "es_MX").body.startswith("México")
    assert resolve_template("final_notice", "email", "es_AR").body.startswith("General")
    assert resolve_template("final_notice", "email", "en_US") == DEFAULTS[("final_notice", "email", "en")]


@pytest.mark.parametrize("locale", ["fr_FR", "de_DE", None, ""])
def test_a_language_without_texts_gets_english_the_merchants_english_first(app, locale):
    assert resolve_template("vip_followup", "whatsapp", locale) == DEFAULTS[("vip_followup", "whatsapp", "en")]
    save_template("vip_followup", "whatsapp", "en_US",
                  body="Hi {{ customer.first_name }}, ours: {{ amount }} {{ payment_link }}", four_eyes=False)
    assert resolve_template("vip_followup", "whatsapp", locale).body.startswith("Hi {{ customer.first_name }}, ours")


def test_an_unknown_name_falls_back_to_payment_failed_in_the_customers_language(app):
    assert resolve_template("no_such_template", "sms", "es_ES") == DEFAULTS[("payment_failed", "sms", "es")]


def test_one_whatsapp_language_code_for_built_ins_and_saved_templates():
    from app.messages import default_templates, templates_service

    assert templates_service.whatsapp_language is default_templates.whatsapp_language
    language = default_templates.whatsapp_language
    assert language("en") == language("en_GB") == language("en_US") == language(None) == "en_US"
    assert language("es") == language("es_ES") == language("es_MX") == "es"
    assert {t["language"] for t in default_templates.whatsapp_approved_templates()} == {"en_US", "es"}
