"""The payment page, its result pages and the receipt speak the customer's language (English and Spanish)."""

from __future__ import annotations

import re
from datetime import timedelta

import sqlalchemy as sa
from flask_babel import force_locale

from app.extensions import db
from app.models import PaymentLink
from app.models.types import utcnow
from app.payments.charges import plain_reason
from app.payments.links import revoke_case_links
from rules.declines import classify_decline
from tests.app.test_payments import link_for, make_paying_case, nmi, nmi_server, paying  # noqa: F401


def _page(app, client, case, locale, **headers):
    case.customer.locale = locale
    db.session.commit()
    return client.get(f"/pay/{link_for(app, case)}", headers=headers).get_data(as_text=True)


def test_a_spanish_customer_reads_the_page_in_spanish(app, client, paying, nmi):  # noqa: F811
    case = make_paying_case(paying, nmi)
    html = _page(app, client, case, "es_ES", **{"Accept-Language": "en-US,en;q=0.9"})
    assert '<html lang="es">' in html
    assert "su pago no se pudo completar" in html.lower() and "Importe pendiente" in html
    assert "Complete su pago" in html and "Pagar 249,00" in html and "Qué ha pasado" in html
    assert "Su banco rechazó el pago" in html  # the decline in plain words
    assert "Pay now" not in html and "What happened" not in html


def test_an_english_customer_reads_it_in_english_whatever_the_browser_says(app, client, paying, nmi):  # noqa: F811
    case = make_paying_case(paying, nmi)
    html = _page(app, client, case, "en_US", **{"Accept-Language": "es-ES,es;q=0.9"})
    assert '<html lang="en">' in html
    assert "Complete your payment" in html and "Pay $249.00" in html and "What happened" in html
    assert "Complete su pago" not in html


def test_a_mexican_customer_falls_back_to_spanish(app, client, paying, nmi):  # noqa: F811
    case = make_paying_case(paying, nmi)
    html = _page(app, client, case, "es_MX")
    assert "Complete su pago" in html and "Pay now" not in html


def test_the_invalid_link_page_follows_the_browser(app, client, paying):  # noqa: F811
    es = client.get("/pay/nonsense", headers={"Accept-Language": "es-MX,es;q=0.9"}).get_data(as_text=True)
    assert "Este enlace de pago no está disponible" in es and '<html lang="es">' in es
    en = client.get("/pay/nonsense", headers={"Accept-Language": "en-US"}).get_data(as_text=True)
    assert "This payment link is not available" in en and '<html lang="en">' in en
    fr = client.get("/pay/nonsense", headers={"Accept-Language": "fr-FR"}).get_data(as_text=True)
    assert "This payment link is not available" in fr


def test_declines_are_explained_in_the_customers_language(app):
    decline = classify_decline("202")
    with app.app_context():
        with force_locale("es_ES"):
            assert plain_reason(decline).startswith("Su banco")
        with force_locale("en_US"):
            assert plain_reason(decline).startswith("Your bank")


# -- a paid or expired link speaks the customer's language, and says which it is -----------------------------------
def _pay(client, token):
    from tests.app.test_payments import submit

    answer = submit(client, token)
    assert answer.status_code == 303, answer.get_data(as_text=True)
    return answer.headers["Location"]


def _spanish_case(paying, nmi):  # noqa: F811
    case = make_paying_case(paying, nmi)
    case.customer.locale = "es_MX"
    db.session.commit()
    return case


def test_a_paid_link_says_already_paid_in_the_customers_language_with_the_receipt_reference(
        app, client, paying, nmi):  # noqa: F811
    from app.models import Payment
    from app.payments.receipts import receipt_reference

    case = _spanish_case(paying, nmi)
    token = link_for(app, case)
    done = client.get(_pay(client, token), headers={"Accept-Language": "en-US"}).get_data(as_text=True)
    payment = db.session.scalar(sa.select(Payment).where(Payment.case_id == case.id))
    reference = receipt_reference(payment.id)
    assert re.fullmatch(r"RC-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{3}", reference)
    assert "Pago recibido" in done and reference in done and payment.order_id not in done
    again = client.get(f"/pay/{token}", headers={"Accept-Language": "en-US,en;q=0.9"})
    html = again.get_data(as_text=True)
    assert again.status_code == 404 and '<html lang="es">' in html
    assert "Ya está pagado" in html and reference in html and "ha caducado" not in html
    assert "already" not in html.lower() and "249" not in html and case.customer.first_name not in html


def test_an_expired_link_says_expired_in_the_customers_language_not_the_browsers(app, client, paying, nmi):  # noqa: F811
    case = _spanish_case(paying, nmi)
    token = link_for(app, case)
    db.session.execute(sa.update(PaymentLink).values(expires_at=utcnow() - timedelta(hours=1)))
    db.session.commit()
    answer = client.get(f"/pay/{token}", headers={"Accept-Language": "en-US,en;q=0.9"})
    html = answer.get_data(as_text=True)
    assert answer.status_code == 404 and '<html lang="es">' in html
    assert "Este enlace de pago ha caducado" in html and "Ya está pagado" not in html
    english = make_paying_case(paying, nmi, vault="CV-101")
    english_token = link_for(app, english)
    revoke_case_links(english.id)
    db.session.commit()
    html = client.get(f"/pay/{english_token}", headers={"Accept-Language": "es-ES"}).get_data(as_text=True)
    assert '<html lang="en">' in html and "This payment link has expired" in html and "not available" in html


def test_the_receipt_and_the_paid_page_link_back_to_the_merchants_site(app, client, paying, nmi):  # noqa: F811
    from app.settings import save_setting

    save_setting("merchant_website_url", "https://shop.example/account", actor="test")
    case = make_paying_case(paying, nmi)
    token = link_for(app, case)
    done = client.get(_pay(client, token)).get_data(as_text=True)
    assert 'href="https://shop.example/account"' in done and "Back to Recoup Demo Store" in done
    paid = client.get(f"/pay/{token}").get_data(as_text=True)
    assert "Already paid" in paid and 'href="https://shop.example/account"' in paid


def test_the_payment_page_wears_the_merchants_name_logo_and_colour(app, client, paying, nmi):  # noqa: F811
    from app.settings import save_setting

    for key, value in (("merchant_name", "Northwind Outfitters"), ("merchant_brand_colour", "#0F766E"),
                       ("merchant_logo_url", "https://cdn.northwind.example/logo.png")):
        save_setting(key, value, actor="test")
    case = make_paying_case(paying, nmi)
    answer = client.get(f"/pay/{link_for(app, case)}")
    html = answer.get_data(as_text=True)
    assert '<img class="logo" src="https://cdn.northwind.example/logo.png" alt="Northwind Outfitters">' in html
    assert "img-src 'self' data: https://cdn.northwind.example;" in answer.headers["Content-Security-Policy"]
    assert "style-src 'self';" in answer.headers["Content-Security-Policy"]  # no inline style: a stylesheet of ours
    css_url = re.search(r'href="(/pay/brand\.css\?v=[0-9a-f]{6})"', html).group(1)
    css = client.get(css_url)
    assert css.status_code == 200 and css.mimetype == "text/css"
    assert "--brand:#0f766e" in css.get_data(as_text=True) and "--on-brand:#ffffff" in css.get_data(as_text=True)
