"""Issue 15, low finding, in a real browser (Playwright driving Debian's Chromium): an auditor opens a customer's page
and the case page and reads the customer masked (initials, j***@domain, +1 •••• ••0142); an operator, who works
the case, reads the same pages whole. Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.harness import BROWSER, PASSWORD, LiveServer, shot, sign_in

pytestmark = BROWSER


class Site:
    def __init__(self, url: str, customer: dict[str, object], case_id: int) -> None:
        self.url = url
        self.customer = customer
        self.case_id = case_id


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    from flask_migrate import upgrade

    from app import create_app
    from app.accounts.users import create_user
    from app.extensions import db
    from app.models import Customer
    from config import TestingConfig
    from tests.admin.world import build_world

    db_file = tmp_path_factory.mktemp("masking") / "recoup.db"
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=f"sqlite:///{db_file}", WTF_CSRF_ENABLED=True)
    with app.app_context():
        upgrade()
        world = build_world()
        customer = db.session.get(Customer, world.customer_id)
        customer.city = "Coral Gables"
        db.session.commit()
        about = {"id": customer.id, "first_name": customer.first_name, "last_name": customer.last_name,
                 "email": customer.email, "phone": customer.phone_e164, "city": customer.city}
        case_id = world.case.id
        create_user("cy.auditor@example.com", PASSWORD, ["auditor"], name="Cy Auditor")
        create_user("olga.operator@example.com", PASSWORD, ["operator"], name="Olga Operator")
    with LiveServer(app) as server:
        yield Site(server.url, about, case_id)


def test_an_auditor_reads_the_customer_masked_and_an_operator_whole(site: Site, browser) -> None:  # type: ignore[no-untyped-def]
    c = site.customer
    email, phone = str(c["email"]), str(c["phone"])
    masked_email = f"{email[0]}***@{email.split('@')[1]}"
    masked_phone = f"+1 •••• ••{phone[-4:]}"
    initials = f"{str(c['first_name'])[0]}. {str(c['last_name'])[0]}."

    context, page = sign_in(browser, site, "cy.auditor@example.com")
    page.goto(f"{site.url}/admin/customers/details/?id={c['id']}")
    text = page.locator("body").inner_text()
    assert masked_email in text and masked_phone in text and initials in text and "C•••" in text
    for secret in (email, phone, str(c["first_name"]), str(c["last_name"]), str(c["city"])):
        assert secret not in page.content(), secret
    shot(page, "pii-01-auditor-customer-masked")

    page.goto(f"{site.url}/admin/cases/timeline/{site.case_id}")
    contact = page.locator("#customer-contact").inner_text()
    assert contact == f"{masked_email} · {masked_phone}"
    assert email not in page.content() and phone not in page.content()
    # the case list's search box offers only what is not personal
    page.goto(f"{site.url}/admin/cases/")
    assert page.locator("input[name=search]").get_attribute("placeholder") == "Case number, order or transaction id"
    context.close()

    context, page = sign_in(browser, site, "olga.operator@example.com")
    page.goto(f"{site.url}/admin/cases/timeline/{site.case_id}")
    assert page.locator("#customer-contact").inner_text() == f"{email} · {phone}"
    page.goto(f"{site.url}/admin/customers/details/?id={c['id']}")
    text = page.locator("body").inner_text()
    assert email in text and phone in text and str(c["city"]) in text
    shot(page, "pii-02-operator-customer-whole")
    context.close()
