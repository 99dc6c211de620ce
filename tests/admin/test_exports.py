"""CSV export of every list (issue 13): for a spreadsheet, not a web page: no HTML, money as a decimal with its
currency, times ISO 8601 in UTC, names instead of reprs, nothing that a spreadsheet would run as a formula, never a
secret; each export audited, and only for the roles that may take data away."""

from __future__ import annotations

import csv
import io
import re

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry
from tests.admin.world import GATEWAY_SECRET, WEBHOOK_SECRET
from tests.builders import make_customer, make_transaction

#: every list in the admin (Flask-Admin model views)
LISTS = ("cases", "customers", "transactions", "messages", "gateway_accounts", "channel_accounts", "users",
         "audit_log")


def _rows(response) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    text = response.get_data(as_text=True)  # read it all: the export is streamed
    assert response.status_code == 200, response.status_code
    assert response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(text)))


def test_every_list_exports_plain_csv(app, client, auth, world):
    auth.login("admin")
    for endpoint in LISTS:
        page = client.get(f"/admin/{endpoint}/").get_data(as_text=True)
        assert f"/admin/{endpoint}/export/csv/" in page, endpoint  # the button is offered
        response = client.get(f"/admin/{endpoint}/export/csv/")
        rows = _rows(response)
        text = response.get_data(as_text=True)
        assert rows or endpoint == "channel_accounts", endpoint  # the world has no channel account
        assert text.splitlines()[0].count(",") >= 3, endpoint  # a header of named columns
        assert not re.search(r"<(a|span|code|br|div)\b", text), endpoint
        assert not re.search(r"&lt;|<Customer|<Role|\d\d:\d\d:\d\d\.\d{6}", text), endpoint
        assert f"recoup-{endpoint}-" in response.headers["Content-Disposition"]


def test_money_times_and_names_are_for_spreadsheets(client, auth, world):
    customer = make_customer(first_name="=HYPERLINK(\"http://evil\")", last_name="", email="evil@example.com")
    make_transaction(customer=customer, gateway_transaction_id="EXPORT-1", amount_minor=24950, currency="EUR")
    db.session.commit()
    auth.login("operator")
    rows = _rows(client.get("/admin/transactions/export/csv/?search=EXPORT-1"))
    assert len(rows) == 1
    row = rows[0]
    assert row["Amount"] == "249.50" and row["Currency"] == "EUR"
    assert row["Failed at"] == "2026-11-27T01:25:00Z"
    assert row["Customer"].startswith("'=HYPERLINK") and "evil@example.com" in row["Customer"]
    cases = _rows(client.get("/admin/cases/export/csv/"))
    assert all(re.fullmatch(r"\d+\.\d\d", r["Amount due"]) for r in cases), cases[0]
    assert all(r["Currency"] for r in cases)


def test_exports_never_hold_a_secret(client, auth, world):
    auth.login("admin")
    for endpoint in ("gateway_accounts", "users", "channel_accounts"):
        text = client.get(f"/admin/{endpoint}/export/csv/").get_data(as_text=True)
        assert GATEWAY_SECRET not in text and WEBHOOK_SECRET not in text
        assert "pbkdf2" not in text and "scrypt" not in text and "password" not in text.lower()


def test_each_export_is_audited(client, auth, world):
    email = auth.login("auditor")
    client.get("/admin/customers/export/csv/?search=ana")
    entry = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "customers.export"))
    assert entry.actor == email and entry.details == {"query": {"search": "ana"}}


@pytest.mark.parametrize(("role", "endpoint", "allowed"), [
    ("author", "customers", False), ("approver", "cases", False), ("operator", "customers", True),
    ("operator", "users", False), ("auditor", "users", True), ("auditor", "audit_log", True),
    ("operator", "audit_log", False), ("author", "messages", False),
])
def test_only_some_roles_take_data_away(client, auth, world, role, endpoint, allowed):
    auth.login(role)
    response = client.get(f"/admin/{endpoint}/export/csv/")
    response.get_data()
    assert (response.status_code == 200) is allowed, response.status_code
    if not allowed:
        assert response.status_code == 403
        if endpoint in ("customers", "cases", "messages"):  # a list they read, without the button
            assert f"/admin/{endpoint}/export/csv/" not in client.get(f"/admin/{endpoint}/").get_data(as_text=True)
