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


def test_every_table_exports_as_csv_and_xlsx_with_the_page_s_numbers(client, auth, app, db):
    import csv
    import io

    import sqlalchemy as sa
    from openpyxl import load_workbook

    from app.models import AuditEntry

    failures(USD=4, EUR=2)
    rollups.refresh_changed()
    auth.login("auditor")
    page = client.get("/admin/?all=1").get_data(as_text=True)
    assert 'id="export-kpis-csv"' in page and "/admin/export/kpis.csv?all=1" in page  # keeps the filters
    answer = client.get("/admin/export/kpis.csv?all=1")
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert {(r["currency"], r["failed"], r["failed_amount"]) for r in rows} == {("USD", "4", "40.00"),
                                                                                ("EUR", "2", "20.00")}
    book = client.get("/admin/export/kpis.xlsx?all=1&currency=EUR")
    assert book.status_code == 200 and book.mimetype.endswith("spreadsheetml.sheet")
    sheet = load_workbook(io.BytesIO(book.data)).active
    values = list(sheet.values)
    assert values[0][:3] == ("currency", "failed", "failed_amount") and values[1][:3] == ("EUR", 2, 20)
    for kind in ("cohorts", "funnel", "breakdown", "best_times"):
        for fmt in ("csv", "xlsx"):
            assert client.get(f"/admin/export/{kind}.{fmt}?all=1").status_code == 200, (kind, fmt)
    assert client.get("/admin/export/customers.csv").status_code == 404
    assert client.get("/admin/export/kpis.pdf").status_code == 404
    taken = db.session.scalars(sa.select(AuditEntry.action).where(AuditEntry.action.like("dashboard.%"))).all()
    assert "dashboard.kpis.export" in taken and len(taken) == 10


def test_message_prices_give_each_channel_its_cost_and_the_tile_its_net(client, auth, app, db):
    from datetime import UTC, datetime

    from app.settings import save_settings
    from tests.builders import make_message

    account = make_gateway_account().id
    for i in range(4):
        case = make_case(transaction=make_transaction(currency="USD", amount_minor=5000, gateway_account_id=account))
        sms = make_message(case=case, channel="sms", state="sent", sent_at=datetime(2026, 10, 1, 12, tzinfo=UTC))
        make_message(case=case, channel="email", state="sent", sent_at=datetime(2026, 10, 1, 13, tzinfo=UTC))
        if i == 0:  # paid at 12:30 through the SMS's link: the SMS is the last touch before the payment
            case.state, case.recovered_message_id, case.recovered_amount_minor = "recovered", sms.id, 5000
            case.closed_at = datetime(2026, 10, 1, 12, 30, tzinfo=UTC)
    eur = make_case(transaction=make_transaction(currency="EUR", amount_minor=3000, gateway_account_id=account))
    make_message(case=eur, channel="sms", state="sent", sent_at=datetime(2026, 10, 1, 12, tzinfo=UTC))
    db.session.commit()
    rollups.refresh_changed()
    auth.login("admin")
    assert 'id="costs-unset"' in client.get("/admin/?all=1").get_data(as_text=True)
    save_settings({"message_costs": {"currency": "USD", "prices": {"sms": "0.5", "email": "0.01"}}}, actor="t")
    html = client.get("/admin/?all=1").get_data(as_text=True)
    sms_row = re.search(r'<tr data-channel="sms">(.*?)</tr>', html, re.S).group(1)
    # 5 SMS cost $2.50 (the EUR case's too); the USD cases' 4 cost $2.00 against $50 won back: net $48.00
    assert re.findall(r"<td>([^<]*)</td>", sms_row) == ["sms", "5", "$2.50", "$50.00", "$48.00"]
    # the USD tile: $50 recovered minus 4 SMS and 4 emails ($2.04)
    assert re.search(r'data-kpi="net">\$47\.96<', html)
    with pytest.raises(Exception, match="not a price"):
        save_settings({"message_costs": {"currency": "USD", "prices": {"sms": "cheap"}}}, actor="t")
    with pytest.raises(Exception, match="not a channel"):
        save_settings({"message_costs": {"currency": "USD", "prices": {"fax": "1"}}}, actor="t")


def test_language_filter_paid_with_breakdown_and_organic_recoveries_on_the_page(client, auth, app, db):
    """A Spanish-speaking customer paid with a new card two days after the last message (last touch, credited); an
    English-speaking one paid five days after it (organic: outside the 72 h window)."""
    from datetime import UTC, datetime, timedelta

    from app.models import Payment
    from tests.builders import make_customer, make_message

    account = make_gateway_account().id
    sent = datetime(2026, 10, 1, 12, tzinfo=UTC)
    for n, (locale, days) in enumerate((("es_MX", 2), ("en_US", 5))):
        customer = make_customer(locale=locale)
        case = make_case(transaction=make_transaction(customer=customer, currency="USD", amount_minor=4000,
                                                      gateway_account_id=account), opened_at=sent)
        message = make_message(case=case, channel="whatsapp", state="sent", sent_at=sent)
        case.state, case.recovered_message_id, case.recovered_amount_minor = "recovered", message.id, 4000
        case.closed_at = sent + timedelta(days=days)
        db.session.add(Payment(case_id=case.id, order_id=f"o-{n}", method="new_card", initiator="customer",
                               amount_minor=4000, currency="USD", state="approved", completed_at=case.closed_at))
    db.session.commit()
    rollups.refresh_changed()
    auth.login("operator")
    html = client.get("/admin/?all=1").get_data(as_text=True)
    assert re.search(r'data-kpi="organic">1 with no touch in the last 72 hours', html)
    assert '<option value="es"' in html and '<option value="en"' in html  # the language filter's choices
    whatsapp = re.search(r"<tr><td>whatsapp</td><td>USD</td>(.*?)</tr>", html, re.S).group(1)
    assert re.findall(r"<td>([^<]*)</td>", whatsapp)[4:6] == ["1", "1"]  # paid: last touch 1, any touch 1
    spanish = client.get("/admin/?all=1&language=es&by=paid_with").get_data(as_text=True)
    assert "data-kpi=\"organic\"" not in spanish  # the Spanish speaker's payment was credited
    assert re.search(r"<tr><td>new_card</td><td>USD</td><td data-value=\"1\">1</td>", spanish)
    assert 'role="alert"' not in spanish  # "paid_with" is a breakdown the page knows


def test_the_channel_table_shows_each_channel_s_opt_out_rate(client, auth, app, db):
    """Four SMS, one answered STOP within the hour: 25 % of SMS opted out; no email did."""
    from datetime import UTC, datetime, timedelta

    from app.models import ConsentEvent
    from tests.builders import make_message

    account = make_gateway_account().id
    sent = datetime(2026, 10, 1, 12, tzinfo=UTC)
    for n in range(4):
        case = make_case(transaction=make_transaction(currency="USD", amount_minor=1000, gateway_account_id=account))
        sms = make_message(case=case, channel="sms", state="sent", sent_at=sent)
        make_message(case=case, channel="email", state="sent", sent_at=sent)
        if n == 0:
            db.session.add(ConsentEvent(customer_id=sms.customer_id, channel="sms", action="opt_out",
                                        source="sms_stop", at=sent + timedelta(minutes=40)))
    db.session.commit()
    rollups.refresh_changed()
    auth.login("operator")
    html = client.get("/admin/?all=1").get_data(as_text=True)
    rates = dict(re.findall(r"<tr><td>(\w+)</td><td>USD</td>.*?<td data-optout-rate>([^<]*)</td>", html))
    assert rates == {"sms": "25.0%", "email": "0.0%"}


def test_lift_over_the_holdout_with_its_interval(client, auth, app, db):
    """200 cases worked by Recoup, 40 % paid (through Recoup or elsewhere); 50 held out, 20 % paid anyway: a lift
    of 20 points, about 40 cases that would have been lost, with Newcombe's interval around it."""
    from datetime import timedelta

    import sqlalchemy as sa

    from app.models import RecoveryCase
    from app.models.types import utcnow

    account = make_gateway_account().id
    for n in range(250):
        held = n >= 200
        case = make_case(transaction=make_transaction(currency="USD", amount_minor=1000, gateway_account_id=account),
                         holdout=held)
        if (held and n % 5 == 0) or (not held and n % 5 in (0, 1)):
            case.state, case.recovered_amount_minor = "recovered", 1000
            case.recovered_via = "elsewhere" if held or n % 2 else None
    db.session.commit()
    rollups.refresh_changed()
    auth.login("operator")
    html = client.get("/admin/?all=1").get_data(as_text=True)
    row = re.search(r'id="holdout-lift".*?<tr data-currency="USD">(.*?)</tr>', html, re.S).group(1)
    cells = [re.sub(r"\s+", " ", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
    assert cells[1:3] == ["40.0% of 200", "20.0% of 50"]
    lift = re.fullmatch(r"\+20\.0 points \(\+(\d+\.\d) to \+(\d+\.\d)\)", cells[3])
    assert lift and 4 < float(lift.group(1)) < 20 < float(lift.group(2)) < 36, cells[3]
    assert cells[4].startswith("40 (")
    # a handful held out says nothing yet
    db.session.execute(sa.update(RecoveryCase).where(RecoveryCase.holdout.is_(True), RecoveryCase.id % 2 == 0)
                       .values(holdout=False))
    db.session.commit()
    rollups.refresh_changed(now=utcnow() + timedelta(minutes=10))
    html = client.get("/admin/?all=1").get_data(as_text=True)
    assert "Too few cases held out to tell yet" in html


def test_the_holdout_section_says_whether_the_holdout_s_card_retries_run(client, auth, app, db):
    """Under the lift table, one sentence for the active policy: ``holdout 5%`` (no messages, no card retries) or
    ``holdout 5% with retries`` (no messages; card retries still run). Nothing to say without a holdout."""
    from app.recovery.policies import activate_text
    from tests.admin.world import STANDARD

    account = make_gateway_account().id
    for n in range(20):
        make_case(transaction=make_transaction(currency="USD", amount_minor=1000, gateway_account_id=account),
                  holdout=n < 5)
    db.session.commit()
    rollups.refresh_changed()
    auth.login("operator")

    def sentence() -> str | None:
        html = client.get("/admin/?all=1").get_data(as_text=True)
        assert 'id="holdout-lift"' in html
        found = re.search(r'<p class="small mb-0" id="holdout-retries">(.*?)</p>', html, re.S)
        return found.group(1).strip() if found else None

    assert sentence() is None  # no active policy
    activate_text("standard", STANDARD, actor=None, note="plain holdout")
    assert sentence() == "The holdout gets no messages and no card retries."
    activate_text("standard", STANDARD.replace("holdout 5%", "holdout 5% with retries"), actor=None, note="retries")
    assert sentence() == "The holdout gets no messages; its card retries still run."
    activate_text("standard", STANDARD.replace("  holdout 5%\n", ""), actor=None, note="no holdout")
    assert sentence() is None
