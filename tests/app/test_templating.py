import re
from dataclasses import replace
from decimal import Decimal

import pytest

from app.channels.base import Channel
from app.messages.colours import contrast
from app.messages.default_templates import default_template
from app.messages.templating import (
    MessageTemplate,
    TemplateContext,
    build_context,
    format_money,
    render,
    sample_context,
    template_errors,
    validate_template,
)
from rules.sms_length import non_gsm7_characters


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "expected"),
    [
        ("1234.5", "EUR", "de_DE", "1.234,50\u00a0€"),
        ("1234.5", "USD", "en_US", "$1,234.50"),
        ("1234.5", "BRL", "pt_BR", "R$\u00a01.234,50"),
        ("1234", "JPY", "ja_JP", "￥1,234"),
        ("249.00", "USD", "fr_FR", "249,00\u00a0$US"),
        ("249.00", "USD", "pt-BR", "US$\u00a0249,00"),
        ("249.00", "USD", "xx_YY", "$249.00"),  # unknown locale falls back to en_US
    ],
)
def test_money_is_formatted_with_babel_exactly(amount, currency, locale, expected):
    assert format_money(Decimal(amount), currency, locale) == expected


def test_context_takes_minor_units_and_the_customers_locale_and_zone():
    context = TemplateContext(
        customer={"first_name": "Jürgen", "locale": "de_DE"},
        transaction={"amount_minor": 24900, "currency": "EUR", "failed_at": "2026-03-14T23:30:00Z"},
        payment_link="https://pay.example.com/p/x",
        merchant={"name": "Acme"},
        offers=(
            "partial_payment",
            {"code": "custom", "title": "Talk to us", "url": "https://acme.example/help"},
        ),
        timezone="Europe/Berlin",
    )
    variables = build_context(context)
    assert variables["amount"] == "249,00\u00a0€"
    assert variables["transaction"]["failed_on"] == "15. März 2026"  # 00:30 the next day in Berlin
    assert variables["offers"] == [
        {"code": "partial_payment", "title": "Pay part now", "url": "https://pay.example.com/p/x"},
        {"code": "custom", "title": "Talk to us", "url": "https://acme.example/help"},
    ]
    assert variables["brand"] == "Acme" and variables["customer"]["name"] == "Jürgen"


def test_sms_gets_the_brand_and_the_opt_out_notice_and_its_segments():
    template = MessageTemplate("Hi {{ customer.first_name }}, your {{ amount }} payment failed: {{ payment_link }}")
    rendered = render(Channel.SMS, template, sample_context(), "de_DE")
    assert rendered.text == (
        "Acme: Hi Ana, your 249,00 $ payment failed: https://pay.example.com/pay/tok_sample\nReply STOP to opt out."
    )
    assert tuple(rendered.sms) == ("GSM-7", 1, 105)  # the no-break space was replaced: still GSM-7
    assert rendered.segments == 1


def test_sms_that_already_complies_is_left_alone():
    template = MessageTemplate("{{ brand }}: {{ amount }} is due. {{ payment_link }} Reply STOP to opt out")
    rendered = render("sms", template, sample_context())
    assert rendered.text == "Acme: $249.00 is due. https://pay.example.com/pay/tok_sample Reply STOP to opt out"


def test_email_renders_subject_text_and_escaped_html():
    template = MessageTemplate(
        body="Hi {{ customer.first_name }},\n\n{{ amount }} failed.",
        subject="Payment of {{ amount }} failed",
        html="<p>Hi {{ customer.first_name }} {{ merchant.name }}</p>",
    )
    context = sample_context()
    context = TemplateContext(**{**context.__dict__, "customer": {**context.customer, "first_name": "<b>Ana</b>"}})
    rendered = render(Channel.EMAIL, template, context)
    assert rendered.subject == "Payment of $249.00 failed"
    assert rendered.html == "<p>Hi &lt;b&gt;Ana&lt;/b&gt; Acme</p>"
    assert rendered.text == "Hi <b>Ana</b>,\n\n$249.00 failed."


def test_dynamic_content_by_product_type():
    template = MessageTemplate(
        "{% if product_type == 'subscription' %}Keep your plan active{% else %}Complete your order{% endif %}"
    )
    assert render("whatsapp", template, sample_context("subscription")).text == "Keep your plan active"
    assert render("whatsapp", template, sample_context("physical")).text == "Complete your order"


def test_a_good_template_has_no_errors():
    problems = validate_template(
        "email",
        "Your {{ merchant.name }} payment",
        "Hi {{ customer.first_name }}, {{ amount }}.\n"
        "{% for offer in offers %}- {{ offer.title }}: {{ offer.url }}\n{% endfor %}",
    )
    assert template_errors(problems) == []


@pytest.mark.parametrize(
    ("body", "kind", "text"),
    [
        ("Hi {{ customr.first_name }}", "undefined", "unknown variable 'customr'"),
        ("Hi {{ customer.nickname }}", "undefined", "'customer' has no 'nickname'"),
        (
            "{% if product_type == 'digital' %}{{ transaction.sku }}{% endif %}",
            "undefined",
            "'transaction' has no 'sku'",
        ),
        ("{% for o in offers %}{{ o.price }}{% endfor %}", "undefined", "'o' has no 'price'"),
        ("{{ customer.__class__.__mro__ }}", "unsafe", "'__mro__' is not allowed"),
        ("{{ ''.__class__ }}", "unsafe", "'__class__' is not allowed"),
        ("{{ customer['_secret'] }}", "unsafe", "'_secret' is not allowed"),
        ("{% include 'x.html' %}", "unsafe", "cannot include"),
        ("{{ amount | nosuchfilter }}", "syntax", "No filter named 'nosuchfilter'"),
        ("Hi {{ customer.first_name }", "syntax", "unexpected '}'"),
        ("{{ offers[3].title }}", "undefined", "no element 3"),
        ("{{ range(10) | list }}", "undefined", "unknown variable 'range'"),
    ],
)
def test_template_errors_are_found_at_save(body, kind, text):
    errors = template_errors(validate_template("sms", None, body))
    assert errors, body
    assert any(e.kind == kind and text in e.message for e in errors), [str(e) for e in errors]
    assert all(e.line == 1 for e in errors if e.kind != "missing")


def test_errors_carry_the_field_and_line():
    [error] = template_errors(validate_template("email", "Hi", "line one\n{{ bogus }}"))
    assert str(error).startswith("body:2: unknown variable 'bogus'")
    [missing] = template_errors(validate_template("email", "", "Hello"))
    assert missing.field == "subject" and missing.kind == "missing"


def test_sms_validation_reports_segments_and_ucs2_characters():
    problems = validate_template("sms", None, "Olá {{ customer.first_name }}, {{ amount }} {{ payment_link }}")
    notes = [str(p) for p in problems]
    assert template_errors(problems) == []
    assert any("segment(s)" in n and "UCS-2" in n for n in notes)
    assert any("force UCS-2" in n and "'á'" in n for n in notes)
    long_one = validate_template("sms", None, "{{ amount }} " * 60)
    assert any(p.severity == "warning" and p.kind == "length" for p in long_one)


# -- built-in texts: English and Spanish, one SMS segment, a branded HTML email -------------------------------------
REALISTIC = {"name": "Northwind Outfitters", "logo_url": "https://cdn.northwind.example/logo.png",
             "brand_colour": "#0f766e", "website": "https://northwind.example",
             "support_email": "help@northwind.example"}
SHORT_LINK = "https://pay.northwind-outfitters.com/p/Ab3dEf6hIj"  # 42 characters: a real domain and a 10-char code


def _customer_context(locale, amount="1249.00", currency="USD", first_name="Lucía"):
    context = sample_context()
    return replace(context, customer={**context.customer, "locale": locale, "first_name": first_name},
                   transaction={**context.transaction, "amount": amount, "currency": currency},
                   merchant=REALISTIC, payment_link=SHORT_LINK)


@pytest.mark.parametrize("locale", ["en_US", "en_GB", "es_ES", "es_MX", "es_AR"])
@pytest.mark.parametrize("name", ["payment_failed", "vip_personal", "vip_followup", "reminder_short", "final_notice"])
def test_every_built_in_sms_fits_one_gsm7_segment(name, locale):
    for amount, currency in (("1249.00", "USD"), ("24999.99", "EUR"), ("1249.00", "MXN")):
        rendered = render("sms", default_template(name, "sms", locale), _customer_context(locale, amount, currency))
        assert non_gsm7_characters(rendered.text) == [], rendered.text
        assert tuple(rendered.sms)[:2] == ("GSM-7", 1) and rendered.sms.length <= 160, (rendered.sms, rendered.text)
        assert "Northwind Outfitters" in rendered.text and SHORT_LINK in rendered.text and "STOP" in rendered.text


@pytest.mark.parametrize("channel", ["email", "sms", "whatsapp"])
def test_a_spanish_customer_gets_spanish_and_an_english_one_english(channel):
    spanish = render(channel, default_template("payment_failed", channel, "es_ES"), _customer_context("es_ES"))
    english = render(channel, default_template("payment_failed", channel, "en_US"), _customer_context("en_US"))
    assert "su pago de 1.249,00" in (spanish.subject or spanish.text).replace("\u00a0", " ").lower()
    assert "payment of $1,249.00" in (english.subject or english.text).lower()
    assert "didn't" not in (spanish.subject or "") + spanish.text and "pago" not in english.text


def test_a_spanish_sms_without_an_opt_out_line_gets_one_in_spanish():
    template = MessageTemplate("{{ brand }}: pague {{ amount }} en {{ payment_link }}", locale="es")
    assert render("sms", template, _customer_context("es_ES")).text.endswith("\nBaja: responda STOP")
    assert render("sms", MessageTemplate("{{ payment_link }}"), _customer_context("es_MX")).text.endswith(
        "\nBaja: responda STOP")
    english = MessageTemplate("{{ brand }}: pay {{ payment_link }}", locale="en")
    assert render("sms", english, _customer_context("es_ES")).text.endswith("\nReply STOP to opt out.")


def test_the_built_in_email_is_branded_html_with_a_pay_button_and_a_plain_text_part():
    rendered = render("email", default_template("payment_failed", "email", "es_ES"), _customer_context("es_ES"))
    html = rendered.html
    assert '<img src="https://cdn.northwind.example/logo.png" alt="Northwind Outfitters"' in html
    assert html.count(f'href="{SHORT_LINK}"') == 2  # the button, and the link to copy under it
    assert re.search(r'background:#0f766e;border-radius:8px"><a href="[^"]+" style="[^"]*color:#ffffff[^"]*">'
                     r"Pagar 1\.249,00\xa0US\$</a>", html), html
    assert 'href="https://northwind.example"' in html and "mailto:help@northwind.example" in html
    assert '<html lang="es">' in html and "Hola, Lucía:" in html
    assert rendered.text.startswith("Hola, Lucía:\n\nIntentamos cobrar 1.249,00\xa0US$")
    assert SHORT_LINK in rendered.text and "<" not in rendered.text  # the plain-text alternative


def test_the_layout_keeps_text_on_a_light_brand_colour_readable():
    context = _customer_context("en_US")
    light = replace(context, merchant={**REALISTIC, "brand_colour": "#fde047", "logo_url": ""})
    html = render("email", default_template("payment_failed", "email", "en_US"), light).html
    assert "color:#111827" in html and ">Pay $1,249.00</a>" in html
    link_colour = re.search(r'href="https://northwind.example" style="color:(#[0-9a-f]{6})"', html).group(1)
    assert contrast(link_colour, "#ffffff") >= 4.5
    hostile = replace(context, merchant={**REALISTIC, "brand_colour": "red;background:url(x)"})
    assert "url(x)" not in render("email", default_template("payment_failed", "email", "en_US"), hostile).html
