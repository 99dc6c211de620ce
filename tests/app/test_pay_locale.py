"""The payment page, its result pages and the receipt speak the customer's language (English and Spanish)."""

from __future__ import annotations

from flask_babel import force_locale

from app.extensions import db
from app.payments import plain_reason
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
