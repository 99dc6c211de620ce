"""Issue 17, point 2, in a real browser (Playwright driving Debian's Chromium): the recovery dashboard is the first
page after signing in. With a planted world counted by the rollups, the tiles show its numbers, both charts draw,
each filter changes the numbers, a bad date says what is wrong, the breakdown switches and sorts, Spanish reads
Spanish; at 1280 and 375 px, and axe finds nothing serious. Before anything failed, the page says so plainly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import BROWSER, PASSWORD, LiveServer, canvas_drawn, check_accessibility, shot, sign_in

pytestmark = BROWSER


class Site:
    def __init__(self, url: str, app: Any) -> None:
        self.url = url
        self.app = app


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    from flask_migrate import upgrade

    from app import create_app
    from app.accounts.users import create_user
    from config import TestingConfig

    db_file = tmp_path_factory.mktemp("dashboard") / "recoup.db"
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=f"sqlite:///{db_file}", WTF_CSRF_ENABLED=True)
    with app.app_context():
        upgrade()
        create_user("mia.merchant@example.com", PASSWORD, ["admin"], name="Mia Merchant")
        create_user("cy.auditor@example.com", PASSWORD, ["auditor"], name="Cy Auditor")
    with LiveServer(app) as server:
        yield Site(server.url, app)


def plant(app: Any) -> None:
    from app.analytics import rollups
    from tests.app.test_analytics_report import world

    with app.app_context():
        world(cases=120)
        rollups.refresh_changed()


def test_the_dashboard_tells_the_story_and_every_control_works(site: Site, browser: Any, tmp_path: Any) -> None:
    from playwright.sync_api import expect

    context, page = sign_in(browser, site, "mia.merchant@example.com")
    try:
        # nothing failed yet: a plain empty state, no charts, no error
        page.goto(f"{site.url}/admin/")
        expect(page.locator("#dashboard-empty")).to_be_visible()
        shot(page, "dashboard-empty")

        plant(site.app)
        page.goto(f"{site.url}/admin/?all=1")
        expect(page.locator(".kpis")).to_have_count(2)  # USD and EUR, never added together
        usd = page.locator('.kpis[data-currency="USD"]')
        failed_all = usd.locator('[data-kpi="failed"]').inner_text()
        assert "$" in failed_all
        assert usd.locator('[data-kpi="time"]').inner_text() in ("half within 3 days, 90% within 3 days",
                                                               "half within 3 days, 90% within 1 week")
        page.wait_for_function("() => document.querySelector('#cohort-chart').width > 0")
        assert canvas_drawn(page, "#cohort-chart") and canvas_drawn(page, "#funnel-chart")
        page.locator("details summary").first.click()
        assert page.locator("#cohort-table tbody tr").count() >= 4
        shot(page, "dashboard-1280")
        check_accessibility(page, "dashboard")

        # best times: a weekday x hour grid of the customer's own hours; thin cells greyed out, the others shaded
        best = page.locator("#best-times")
        expect(best.locator("thead th")).to_have_text(["Weekday", "09:00", "19:00"])
        expect(best.locator("tbody tr")).to_have_count(7)
        thin = best.locator("td[data-thin]")
        assert thin.count() > 0  # 120 cases over 14 cells: every cell is under 30 first messages
        assert "too few to rank" in (thin.first.get_attribute("title") or "")

        # the export downloads and reopens with the page's numbers
        with page.expect_download() as download:
            page.click("#export-kpis-xlsx")
        from openpyxl import load_workbook

        assert download.value.suggested_filename.endswith(".xlsx")
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        sheet = load_workbook(saved).active
        exported = {row[0]: row[1] for row in list(sheet.values)[1:]}
        shown = usd.locator('[data-kpi="failed"]').locator("xpath=..").locator("div.small:not(.text-muted)")
        assert f"{exported['USD']} payments" == shown.inner_text()

        # a filter changes the numbers: only EUR, then only WhatsApp's messages
        page.select_option("#f-currency", "EUR")
        page.click("#apply-filters")
        page.wait_for_url("**currency=EUR**")
        expect(page.locator(".kpis")).to_have_count(1)
        expect(page.locator('.kpis[data-currency="EUR"]')).to_be_visible()
        page.select_option("#f-currency", "")
        page.select_option("#f-channel", "whatsapp")
        page.click("#apply-filters")
        page.wait_for_url("**channel=whatsapp**")
        funnel = page.locator("#funnel-table tbody tr")
        expect(funnel).to_have_count(2)  # whatsapp, in USD and EUR
        assert all("whatsapp" in (funnel.nth(i).text_content() or "") for i in range(2))
        # the customer's language: Spanish speakers only are half the failures
        page.select_option("#f-channel", "")
        page.select_option("#f-language", "es")
        page.click("#apply-filters")
        page.wait_for_url("**language=es**")
        spanish = page.locator('.kpis[data-currency="USD"] [data-kpi="failed"]').inner_text()
        assert spanish != failed_all
        expect(page.locator("#funnel-table thead")).to_contain_text("Paid (any touch)")
        # the period: the first week only has fewer failures than the whole
        page.goto(f"{site.url}/admin/?start=2026-09-07&end=2026-09-13")
        first_week = page.locator('.kpis[data-currency="USD"] [data-kpi="failed"]').inner_text()
        assert first_week != failed_all

        # the breakdown switches, and its columns sort (and say so)
        page.goto(f"{site.url}/admin/?all=1")
        page.select_option("#f-by", "local_hour")
        page.click("#apply-breakdown")
        page.wait_for_url("**by=local_hour**")
        rows = page.locator("#breakdown-table tbody tr")
        expect(rows.first).to_be_visible()
        assert {rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())} == {"9", "19"}
        paid = page.locator("#breakdown-table th").nth(5)
        paid.locator("button").click()
        expect(paid).to_have_attribute("aria-sort", "ascending")
        values = [int(rows.nth(i).locator("td").nth(5).inner_text()) for i in range(rows.count())]
        assert values == sorted(values)
        paid.locator("button").click()
        expect(paid).to_have_attribute("aria-sort", "descending")

        # bad input says what is wrong, and the page still works
        page.goto(f"{site.url}/admin/?start=yesterday&by=colour")
        alerts = page.locator(".alert-warning")
        expect(alerts).to_have_count(2)
        assert "yesterday" in alerts.nth(0).inner_text() and "colour" in alerts.nth(1).inner_text()

        # a phone
        page.set_viewport_size({"width": 375, "height": 800})
        page.goto(f"{site.url}/admin/?all=1")
        tile = page.locator(".kpis .card").first.bounding_box()
        assert tile is not None and tile["x"] >= 0 and tile["x"] + tile["width"] <= 375  # tiles fit the phone
        shot(page, "dashboard-375")
    finally:
        context.close()

    # Spanish, for an auditor (every signed-in role reads the dashboard)
    context, page = sign_in(browser, site, "cy.auditor@example.com", locale="es-ES")
    try:
        page.goto(f"{site.url}/admin/?all=1")
        expect(page.locator("#cohort-title")).to_have_text("Recuperación por semana de apertura de los casos")
        assert "Tasa de recuperación" in page.locator(".kpis").first.inner_text()
        assert "€" in page.locator('.kpis[data-currency="EUR"] [data-kpi="failed"]').inner_text()
        shot(page, "dashboard-es")
    finally:
        context.close()
