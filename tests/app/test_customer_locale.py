"""A customer's locale follows a change of country unless it was set by hand, and their waiting messages follow it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.gateways.base import FailedTransaction, GatewayCustomer
from app.ingest.customer_locale import LocaleRefused, follow_country, guess_locale, set_by_hand
from app.ingest.transactions import ingest_context, ingest_records
from app.models import Customer, OutboxMessage
from tests.builders import make_case, make_customer, make_gateway_account, make_message, make_transaction

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("country", "locale"), [("MX", "es_MX"), ("ES", "es_ES"), ("AR", "es_AR"), ("US", "en_US"),
                                                 ("GB", "en_GB"), ("FR", "fr_FR"), ("BR", "pt_BR"), (None, "en_US"),
                                                 ("ZZ", "en_US"), ("mx", "es_MX")])
def test_the_guess_is_the_countrys_language(country, locale):
    assert guess_locale(country) == locale


def _failure(n, country, when):
    return FailedTransaction(
        gateway="nmi", gateway_transaction_id=f"77000{n}", amount_minor=4900, currency="USD", decline_code="202",
        decline_text="Insufficient funds", merchant_advice_code=None, failed_at=when, modified_at=when,
        order_id=f"order-{n}", order_description="Gold membership",
        customer=GatewayCustomer(customer_id="CV-LOC-1", first_name="Lucía", email="lucia@example.com",
                                 country=country))


def _ingest(account, n, country, when):
    ingest_records([_failure(n, country, when)], ingest_context(account))
    db.session.expire_all()
    return db.session.scalars(sa.select(Customer).where(Customer.email == "lucia@example.com")).one()


def test_a_guessed_locale_follows_the_country_through_ingest(app):
    account = make_gateway_account()
    db.session.commit()
    customer = _ingest(account, 1, "US", T0)
    assert (customer.locale, customer.locale_source) == ("en_US", "guessed")
    customer = _ingest(account, 2, "MX", T0 + timedelta(days=1))  # moved to Mexico
    assert (customer.locale, customer.locale_source) == ("es_MX", "guessed")


def test_a_locale_set_by_hand_stays_whatever_country_comes_next(app):
    account = make_gateway_account()
    db.session.commit()
    customer = _ingest(account, 1, "US", T0)
    set_by_hand(customer, "es-us")
    db.session.commit()
    customer = _ingest(account, 2, "GB", T0 + timedelta(days=1))
    assert (customer.locale, customer.locale_source, customer.country) == ("es_US", "manual", "GB")
    set_by_hand(customer, "")  # cleared: back to guessing, from the country we know now
    assert (customer.locale, customer.locale_source) == ("en_GB", "guessed")


def test_a_locale_stored_before_its_source_was_stays_until_the_country_changes(app):
    customer = make_customer(locale="es_US", country="US")  # no source: maybe chosen by hand back then
    follow_country(customer)
    assert (customer.locale, customer.locale_source) == ("es_US", None)
    db.session.commit()
    customer.country = "MX"
    follow_country(customer)
    assert (customer.locale, customer.locale_source) == ("es_MX", "guessed")


def test_messages_still_waiting_follow_the_new_locale_and_sent_ones_keep_theirs(app):
    customer = make_customer(locale="en_US", locale_source="guessed", country="US")
    case = make_case(transaction=make_transaction(customer=customer))
    waiting = make_message(case=case, locale="en_US")
    sent = make_message(case=case, locale="en_US", state="sent")
    db.session.commit()
    customer.country = "ES"
    follow_country(customer)
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(OutboxMessage, waiting.id).locale == "es_ES"
    assert db.session.get(OutboxMessage, sent.id).locale == "en_US"


def test_a_locale_babel_does_not_know_is_refused_in_words(app):
    customer = make_customer()
    with pytest.raises(LocaleRefused, match="“klingon” is not a language we know"):
        set_by_hand(customer, "klingon")
    assert customer.locale == "en_US"
