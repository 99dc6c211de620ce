"""What customers see of the merchant: the admin's settings over the config, validated, read fresh after a save."""

from __future__ import annotations

import pytest

from app.messages.merchant import merchant_profile
from app.settings import EDITABLE, SettingRefused, get_setting, save_setting


def test_empty_settings_fall_back_to_the_config(app):
    app.config.update(MERCHANT_NAME="Config Store", MERCHANT_WEBSITE_URL="https://config.example",
                      MERCHANT_SUPPORT_EMAIL="help@config.example", MERCHANT_BRAND_COLOUR="#123")
    app.extensions.pop("recoup.merchant", None)
    brand = merchant_profile()
    assert (brand.name, brand.website_url, brand.support_email) == ("Config Store", "https://config.example",
                                                                    "help@config.example")
    assert brand.brand_colour == "#112233" and brand.logo_url is None


def test_a_saved_setting_wins_at_once_and_clearing_it_goes_back_to_the_config(app):
    assert merchant_profile().name == app.config["MERCHANT_NAME"]  # read (and kept) before the change
    save_setting("merchant_name", "  Northwind Outfitters ", actor="admin@example.com")
    save_setting("merchant_brand_colour", "#0F766E", actor="admin@example.com")
    brand = merchant_profile()
    assert brand.name == "Northwind Outfitters" and brand.brand_colour == "#0f766e"
    assert brand.text_on_brand == "#ffffff" and get_setting("merchant_name") == "Northwind Outfitters"
    save_setting("merchant_name", "", actor="admin@example.com")
    assert merchant_profile().name == app.config["MERCHANT_NAME"]


@pytest.mark.parametrize(("key", "value", "words"), [
    ("merchant_brand_colour", "blue", "is not a colour"),
    ("merchant_brand_colour", "#12345", "is not a colour"),
    ("merchant_logo_url", "javascript:alert(1)", "is not a web address"),
    ("merchant_website_url", "https://shop.example/\" onmouseover=\"x", "is not a web address"),
    ("merchant_support_email", "help at shop", "is not an email address"),
    ("merchant_name", "two\nlines", "one line"),
    ("merchant_name", 42, "as text"),
])
def test_bad_values_are_refused_in_words_and_nothing_is_stored(app, key, value, words):
    assert key in EDITABLE
    with pytest.raises(SettingRefused, match=words):
        save_setting(key, value, actor="admin@example.com")
    assert get_setting(key) is None


def test_a_light_brand_colour_gets_dark_text_and_a_darker_shade_for_links(app):
    from app.messages.colours import contrast

    save_setting("merchant_brand_colour", "#fde047", actor="admin@example.com")
    brand = merchant_profile()
    assert brand.text_on_brand == "#111827" and contrast(brand.brand_ink, "#ffffff") >= 4.5
