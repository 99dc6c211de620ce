"""The dashboard page through the test client: every signed-in role reads it; the two currencies with most failures
are tiles and the others a table (never added together); it says up to when it counted; the demo counts before
it shows."""

from __future__ import annotations

import re

import pytest

from app.analytics import rollups
from app.extensions import db
from tests.builders import make_case, make_gateway_account, make_transaction


def failures(**per_currency: int) -> None:
    account = make_gateway_account().id
    for currency, n in per_currency.items():
        for _ in range(n):
            make_case(transaction=make_transaction(currency=currency, amount_minor=1000, gateway_account_id=account))
    db.session.commit()


@pytest.mark.parametrize("role", ["operator", "auditor", "author", "approver", "admin"])
def test_every_role_reads_the_dashboard(client, auth, role):
    auth.login(role)
    page = client.get("/admin/")
    assert page.status_code == 200 and "Recovery at a glance" in page.get_data(as_text=True)


def test_two_currencies_are_tiles_and_the_rest_a_table(client, auth, app):
    failures(USD=5, EUR=3, GBP=2, JPY=1)
    rollups.refresh_changed()
    auth.login("operator")
    html = client.get("/admin/").get_data(as_text=True)
    tiles = re.findall(r'class="row kpis" data-currency="(\w+)"', html)
    table = re.findall(r'<tr data-currency="(\w+)">', html)
    assert tiles == ["USD", "EUR"] and table == ["GBP", "JPY"]
    assert 'id="counted-at"' in html and "Counted up to" in html


def test_the_demo_counts_what_happened_before_it_shows_it(client, auth, app):
    app.config["DEMO_MODE"] = True
    failures(USD=2)  # nothing counted them yet
    auth.login("operator")
    html = client.get("/admin/").get_data(as_text=True)
    assert re.findall(r'class="row kpis" data-currency="(\w+)"', html) == ["USD"]
    app.config["DEMO_MODE"] = False
    failures(EUR=1)
    html = client.get("/admin/").get_data(as_text=True)  # outside the demo: the analytics job's business
    assert re.findall(r'class="row kpis" data-currency="(\w+)"', html) == ["USD"]
