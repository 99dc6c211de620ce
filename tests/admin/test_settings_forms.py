"""Settings are forms (issue 13, point 9): a field per value, errors next to the field, a section saved whole or not
at all, every change audited. Posted as a browser posts them (tests/admin/browserlike.py), CSRF on."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry
from app.settings import get_setting
from tests.admin.browserlike import field_errors, sign_in


@pytest.fixture
def admin_client(app):  # type: ignore[no-untyped-def]
    app.config["WTF_CSRF_ENABLED"] = True
    client = app.test_client()
    sign_in(client, "admin")
    return client


def _section(client, key: str):  # type: ignore[no-untyped-def]
    page = client.get("/admin/settings/").get_data(as_text=True)
    forms = [f for f in _forms(page) if f.action.endswith(f"/admin/settings/{key}")]
    assert len(forms) == 1, key
    return forms[0]


def _forms(page: str):  # type: ignore[no-untyped-def]
    from tests.admin.browserlike import forms

    return forms(page)


def _post(client, key: str, **typed):  # type: ignore[no-untyped-def]
    from werkzeug.datastructures import MultiDict

    form = _section(client, key)
    return client.post(form.action, data=MultiDict(form.data(**{f"{key}-{k}": v for k, v in typed.items()})))


def _errors(response, key: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Field errors of one section, by the field's name within it."""
    found = field_errors(response.get_data(as_text=True))
    return {k.removeprefix(f"{key}-"): v for k, v in found.items() if k.startswith(f"{key}-")}


def _updates(key: str) -> list[AuditEntry]:
    return list(db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "setting.update",
                                                               AuditEntry.target_id == key)))


def test_the_page_shows_forms_not_json(admin_client):
    page = admin_client.get("/admin/settings/").get_data(as_text=True)
    assert "<textarea" not in page and "CSRF Token" not in page
    form = _section(admin_client, "contact_windows")
    assert form.values("contact_windows-rows-0-region") == ["*"]
    assert form.values("contact_windows-rows-0-quiet_hours") == ["21:00-08:00"]
    assert _section(admin_client, "fx_rates").values("fx_rates-base") == ["USD"]
    assert [k for k, _ in _section(admin_client, "fx_rates").fields if k.endswith("csrf_token")] == [
        "fx_rates-csrf_token"]


def test_contact_windows_are_saved_from_rows_and_audited(admin_client):
    response = _post(admin_client, "contact_windows", **{
        "rows-0-business_hours": "mon-fri 09:00-18:00",
        "rows-1-region": "us-fl", "rows-1-quiet_hours": "20:00-08:00",
        "rows-1-blackout_dates": "2026-12-25, 2026-12-24"})
    assert response.status_code == 302, _errors(response, "contact_windows")
    assert get_setting("contact_windows") == {
        "*": {"business_hours": "mon-fri 09:00-18:00", "quiet_hours": "21:00-08:00"},
        "US-FL": {"quiet_hours": "20:00-08:00", "blackout_dates": ["2026-12-24", "2026-12-25"]}}
    assert len(_updates("contact_windows")) == 1
    removed = _post(admin_client, "contact_windows", **{"rows-1-remove": True})
    assert removed.status_code == 302
    assert set(get_setting("contact_windows")) == {"*"}


def test_a_wrong_field_is_marked_with_its_error_and_nothing_is_saved(admin_client):
    before = get_setting("contact_windows")
    response = _post(admin_client, "contact_windows", **{
        "rows-0-quiet_hours": "9pm-8am", "rows-1-region": "Florida", "rows-1-business_hours": "weekdays 9-5",
        "rows-2-region": "US", "rows-2-blackout_dates": "2026-12-25, Christmas"})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    errors = _errors(response, "contact_windows")
    assert "should look like" in errors["rows-0-quiet_hours"] and 'value="9pm-8am"' in html  # kept to fix
    assert "US-FL" in errors["rows-1-region"]
    assert "mon-fri 09:00-18:00" in errors["rows-1-business_hours"]
    assert "Christmas" in errors["rows-2-blackout_dates"]
    assert "rows-2-region" not in errors
    assert "line 1, column" not in html and "nothing was changed" in html
    assert html.count('name="contact_windows-rows-') == 5 * 3  # the three rows as sent, no blank ones added
    assert get_setting("contact_windows") == before and not _updates("contact_windows")


def test_value_bands_in_amounts_not_cents(admin_client):
    form = _section(admin_client, "value_bands")
    assert form.values("value_bands-builtin") == ["y"] and "20.00" in form.values("value_bands-rows-1-lower")
    shown = len([k for k, _ in form.fields if k.endswith("-currency")]) - 2  # the built-in bands, and two blank
    rows = {"builtin": False, **{f"rows-{n}-remove": True for n in range(shown)},
            f"rows-{shown}-currency": "usd", f"rows-{shown}-name": "low", f"rows-{shown}-lower": "0",
            f"rows-{shown + 1}-currency": "USD", f"rows-{shown + 1}-name": "high", f"rows-{shown + 1}-lower": "150.50"}
    response = _post(admin_client, "value_bands", **rows)
    assert response.status_code == 302, _errors(response, "value_bands")
    assert get_setting("value_bands") == {"USD": [["low", 0], ["high", 15050]]}
    bad = _post(admin_client, "value_bands", **{"rows-0-lower": "5", "rows-1-lower": "1.234"})
    errors = _errors(bad, "value_bands")
    assert "must start at 0" in errors["rows-0-lower"] and "at most 2 decimals" in errors["rows-1-lower"]
    assert get_setting("value_bands") == {"USD": [["low", 0], ["high", 15050]]}


def test_exchange_rates_and_product_types_check_each_field(admin_client):
    bad = _post(admin_client, "fx_rates", base="XXY", **{"rows-0-rate": "-1", "rows-1-currency": "EUR"})
    errors = _errors(bad, "fx_rates")
    assert "not a currency code" in errors["base"] and "positive number" in errors["rows-0-rate"]
    assert any("EUR is listed twice" in e for e in errors.values()), errors
    assert get_setting("fx_rates")["base"] == "USD"
    ok = _post(admin_client, "fx_rates", **{"rows-0-rate": "1.10"})
    assert ok.status_code == 302
    assert get_setting("fx_rates")["rates"]["AED"] == "1.10"  # rows sorted by code: AED first

    both = _post(admin_client, "product_rules", default_product_type="Digital Goods", **{"rows-0-type": ""})
    errors = _errors(both, "product_rules")
    assert "Lower-case" in errors["default_product_type"] and "Lower-case" in errors["rows-0-type"]
    assert get_setting("default_product_type") == "one_time"  # nothing of the form was saved
    ok = _post(admin_client, "product_rules", default_product_type="physical", **{"rows-0-pattern": "PLAN-*"})
    assert ok.status_code == 302
    assert get_setting("default_product_type") == "physical" and get_setting("product_rules")[0]["sku"] == "PLAN-*"


def test_four_eyes_is_a_checkbox(admin_client):
    assert get_setting("policy_four_eyes") is True
    assert _post(admin_client, "policy_four_eyes", policy_four_eyes=None).status_code == 302
    assert get_setting("policy_four_eyes") is False
    entry = _updates("policy_four_eyes")[-1]
    assert entry.details == {"from": True, "to": False}


def test_only_admins_change_settings(app):  # type: ignore[no-untyped-def]
    app.config["WTF_CSRF_ENABLED"] = True
    client = app.test_client()
    sign_in(client, "operator")
    page = client.get("/admin/settings/").get_data(as_text=True)
    assert re.search(r"<fieldset\s+disabled", page) and ">Save<" not in page
    form = next(f for f in _forms(page) if f.action.endswith("/admin/settings/policy_four_eyes"))
    assert client.post(form.action, data=_multi(form.data())).status_code == 403
    assert get_setting("policy_four_eyes") is True


def _multi(pairs):  # type: ignore[no-untyped-def]
    from werkzeug.datastructures import MultiDict

    return MultiDict(pairs)


def test_the_shop_as_customers_see_it(admin_client):
    bad = _post(admin_client, "merchant", merchant_name="Northwind", merchant_brand_colour="blue-ish")
    assert "not a colour" in _errors(bad, "merchant")["merchant_brand_colour"]
    assert get_setting("merchant_name") is None  # the good field of a refused form is not saved either
    ok = _post(admin_client, "merchant", merchant_name="Northwind", merchant_brand_colour="#17c")
    assert ok.status_code == 302
    assert (get_setting("merchant_name"), get_setting("merchant_brand_colour")) == ("Northwind", "#1177cc")


def test_message_prices_are_a_form_refused_field_by_field_and_cleared_by_emptying_it(admin_client):
    bad = _post(admin_client, "message_costs", currency="usd", sms="cheap", email="0.001")
    assert bad.status_code == 400 and "sms" in _errors(bad, "message_costs")
    assert get_setting("message_costs") is None  # nothing half-saved
    nocode = _post(admin_client, "message_costs", currency="dollars", sms="0.0079")
    assert nocode.status_code == 400 and "currency" in _errors(nocode, "message_costs")
    good = _post(admin_client, "message_costs", currency="usd", sms="0.0079", whatsapp="0.025")
    assert good.status_code == 302, _errors(good, "message_costs")
    assert get_setting("message_costs") == {"currency": "USD", "prices": {"sms": "0.0079", "whatsapp": "0.025"}}
    assert _section(admin_client, "message_costs").values("message_costs-sms") == ["0.0079"]
    cleared = _post(admin_client, "message_costs", currency="", sms="", whatsapp="", email="")
    assert cleared.status_code == 302 and get_setting("message_costs") is None
    assert len(_updates("message_costs")) == 2


def test_the_attribution_window_is_a_number_of_hours_refused_out_of_range(admin_client):
    assert get_setting("attribution_window_hours") == 72  # the default, as the dunning tools count
    assert _section(admin_client, "attribution").values("attribution-attribution_window_hours") == ["72"]
    for wrong in ("0", "721", "three days", ""):
        bad = _post(admin_client, "attribution", attribution_window_hours=wrong)
        assert bad.status_code == 400 and "attribution_window_hours" in _errors(bad, "attribution"), wrong
    assert get_setting("attribution_window_hours") == 72  # nothing saved
    good = _post(admin_client, "attribution", attribution_window_hours="24")
    assert good.status_code == 302, _errors(good, "attribution")
    assert get_setting("attribution_window_hours") == 24
    assert len(_updates("attribution_window_hours")) == 1
