"""Finding a case by what an operator has at hand (app.recovery.case_search), on both databases."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.models import Payment, RecoveryCase
from app.recovery.case_search import case_search
from tests.builders import make_case, make_customer, make_transaction


@pytest.fixture
def cases(db):  # type: ignore[no-untyped-def]
    ana = make_customer(first_name="Ana", last_name="Pérez Soto", email="ana.perez@example.com",
                        phone_e164="+13055550142")
    bo = make_customer(first_name="Bo", last_name="Anders", email="bo@shop.example", phone_e164="+442079460000")
    found = {
        "ana": make_case(transaction=make_transaction(customer=ana, order_id="ORD-1001", gateway_transaction_id="T-1")),
        "ana2": make_case(transaction=make_transaction(customer=ana, order_id="ORD-1002")),
        "bo": make_case(transaction=make_transaction(customer=bo, order_id="ORD_100%", gateway_transaction_id="T-2")),
    }
    db.session.add(Payment(case_id=found["bo"].id, order_id="recoup-1", method="vault", initiator="customer",
                           amount_minor=100, currency="USD", state="approved", gateway_transaction_id="PAY-77"))
    db.session.commit()
    return {k: c.id for k, c in found.items()}


def search(db, text: str) -> set[int]:  # type: ignore[no-untyped-def]
    return set(db.session.scalars(sa.select(RecoveryCase.id).where(case_search(text))))


@pytest.mark.parametrize(("text", "who"), [
    ("ana.perez@example.com", {"ana", "ana2"}),
    ("ANA.PEREZ@example.com", {"ana", "ana2"}),
    ("ana.perez@", {"ana", "ana2"}),
    ("+1 (305) 555-0142", {"ana", "ana2"}),
    ("305 555 0142", {"ana", "ana2"}),
    ("020 7946 0000", {"bo"}),
    ("Ana Pérez", {"ana", "ana2"}),
    ("pérez", {"ana", "ana2"}),
    ("Bo", {"bo"}),
    ("ORD-1001", {"ana"}),
    ("ORD_100%", {"bo"}),
    ("T-2", {"bo"}),
    ("PAY-77", {"bo"}),
    ("ORD-10", set()),  # order ids match whole, not by their start
    ("ORD_10", set()),  # and a LIKE wildcard typed by someone is a character
    ("nobody@nowhere.example", set()),
    ("   ", set()),
])
def test_one_box_finds_cases_by_name_email_phone_order_and_transaction(db, cases, text, who):
    assert search(db, text) == {cases[k] for k in who}


def test_a_case_number(db, cases):
    assert search(db, f"#{cases['bo']}") == {cases["bo"]}


def test_a_later_failure_of_the_order_finds_the_case_it_joined(db, cases):
    later = make_transaction(order_id="ORD-LATE", gateway_transaction_id="T-LATE", joined_case_id=cases["ana"])
    db.session.commit()
    assert later.id and search(db, "T-LATE") == {cases["ana"]} == search(db, "ORD-LATE")
