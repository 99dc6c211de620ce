"""Operators' case tools in a real browser (Playwright driving Debian's Chromium) against the app on a real server.

An operator finds a case by the customer's email and by the order id, sends its next step now, pauses it, resumes
it, copies a payment link and marks it paid elsewhere; an auditor sees the case but no actions, and every attempt
to act is refused with 403. Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.harness import BROWSER, PASSWORD, LiveServer, post_from_page, shot, sign_in

pytestmark = BROWSER

ORDER_ID = "SHOP-2026-88412"


class Site:
    def __init__(self, url: str, app, ids: dict[str, object]) -> None:  # type: ignore[no-untyped-def]
        self.url = url
        self.app = app
        self.ids = ids


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    from flask_migrate import upgrade

    from app import create_app
    from app.accounts.users import create_user
    from app.extensions import db
    from app.models import Customer, Transaction
    from config import TestingConfig
    from tests.admin.world import build_world

    db_file = tmp_path_factory.mktemp("case-tools") / "recoup.db"
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=f"sqlite:///{db_file}", WTF_CSRF_ENABLED=True)
    with app.app_context():
        upgrade()
        world = build_world()
        case = world.case
        db.session.get(Transaction, case.transaction_id).order_id = ORDER_ID
        customer = db.session.get(Customer, case.customer_id)
        ids = {"case": case.id, "email": customer.email, "amount": f"{case.amount_due_minor / 100:.2f}",
               "open": next(c.id for c in world.cases if c.id != case.id)}
        db.session.commit()
        create_user("olga.operator@example.com", PASSWORD, ["operator"], name="Olga Operator")
        create_user("cy.auditor@example.com", PASSWORD, ["auditor"], name="Cy Auditor")
    with LiveServer(app) as server:
        yield Site(server.url, app, ids)


def search_cases(page, site: Site, text: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{site.url}/admin/cases/")
    box = page.locator("input[name=search]")
    box.fill(text)
    box.press("Enter")
    page.wait_for_url("**/admin/cases/?*search=*")


def flash(page) -> str:  # type: ignore[no-untyped-def]
    alert = page.locator(".alert").first
    alert.wait_for()
    return str(alert.inner_text())


def test_an_operator_finds_and_works_a_case_and_an_auditor_is_refused(site: Site, browser) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    case_id = site.ids["case"]
    timeline = f"/admin/cases/timeline/{case_id}"
    context, page = sign_in(browser, site, "olga.operator@example.com")

    # -- found by the customer's email, then by the order id
    search_cases(page, site, str(site.ids["email"]))
    rows = page.locator(f'a[href$="{timeline}"]')
    expect(rows).to_have_count(1)
    assert page.locator("a[href*='/admin/cases/timeline/']").count() == 1  # only that customer's case
    shot(page, "case-tools-01-found-by-email")
    search_cases(page, site, ORDER_ID)
    expect(page.locator(f'a[href$="{timeline}"]')).to_have_count(1)
    assert page.locator("a[href*='/admin/cases/timeline/']").count() == 1
    page.locator(f'a[href$="{timeline}"]').click()
    page.wait_for_url(f"**{timeline}")
    shot(page, "case-tools-02-case-page")

    # -- send the next step now: now, or at the earliest legal moment, and the page says which
    page.click("#send-now")
    page.wait_for_url(f"**{timeline}")
    said = flash(page)
    assert "goes now" in said or "earliest moment allowed" in said, said
    assert "Asked to send the next step now" in page.locator("#timeline").inner_text()
    shot(page, "case-tools-03-sent-now")

    # -- pause, and a second pause is refused in words; then resume
    page.fill("#pause-reason", "customer called: pays on Friday")
    page.click("#pause")
    page.wait_for_url(f"**{timeline}")
    assert "Paused:" in flash(page)
    expect(page.locator("#case-paused")).to_be_visible()
    assert page.locator("#send-now").count() == 0 and page.locator("#pause").count() == 0
    assert "customer called: pays on Friday" in page.locator("#timeline").inner_text()
    shot(page, "case-tools-04-paused")
    # a second pause is not refused by role (fetch sees the redirect back as opaque: 0) but by the case's state
    assert post_from_page(page, f"/admin/cases/{case_id}/pause", {}) in (0, 302)
    page.goto(site.url + timeline)
    assert "already paused" in flash(page)
    page.click("#resume")
    page.wait_for_url(f"**{timeline}")
    assert "Resumed" in flash(page)
    expect(page.locator("#case-paused")).to_have_count(0)
    shot(page, "case-tools-05-resumed")

    # -- a payment link to copy
    page.click("#make-link")
    page.wait_for_url(f"**{timeline}")
    link = page.locator("#payment-link").input_value()
    assert link.startswith("http://localhost/p/") or link.startswith("http://localhost/pay/"), link
    page.click("#copy-link")
    expect(page.locator("#copy-link")).to_have_attribute("data-copied", "1")

    # -- mark paid elsewhere (with the confirmation the page asks for)
    assert page.locator("#paid-amount").input_value() == site.ids["amount"]
    page.fill("#paid-note", "paid by bank transfer")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#paid-elsewhere")
    page.wait_for_url(f"**{timeline}")
    assert "Marked as paid elsewhere" in flash(page)
    expect(page.locator("#case-state")).to_have_text("Recovered")
    assert page.locator("#case-actions").count() == 0  # a closed case takes no more actions
    assert "paid by bank transfer" in page.locator("#timeline").inner_text()
    shot(page, "case-tools-06-paid-elsewhere")
    context.close()

    # -- an auditor reads the case, and every attempt to act on it is refused
    context, page = sign_in(browser, site, "cy.auditor@example.com")
    open_case = site.ids["open"]
    response = page.goto(f"{site.url}/admin/cases/timeline/{open_case}")
    assert response is not None and response.status == 200
    assert page.locator("#case-actions").count() == 0
    for action in ("send-now", "pause", "resume", "payment-link", "paid-elsewhere", "cancel"):
        assert post_from_page(page, f"/admin/cases/{open_case}/{action}", {"amount": "1.00"}) == 403, action
    page.reload()
    assert page.locator("#case-paused").count() == 0 and "Open" in page.locator("#case-state").inner_text()
    shot(page, "case-tools-07-auditor-reads-only")
    context.close()
