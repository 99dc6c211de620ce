"""Every admin model view in a real browser (Playwright driving Debian's Chromium), CSRF on, through the real forms
(issue 13, "Done when" 1): the right role creates, edits and deletes where the view allows it, the database is read
back to prove the row changed, and the wrong role gets the 403 page. Read-only views list, show details and export,
and refuse their create and edit URLs. Screenshots go to test-artifacts/screenshots/.

The views are those admin/views.py register_views adds as Flask-Admin model views; the last test checks that none
was left out here.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import BROWSER, PASSWORD, LiveServer, post_from_page, shot, sign_in

pytestmark = BROWSER

ADMIN, OPERATOR, AUDITOR, AUTHOR = ("ada.admin@example.com", "olga.operator@example.com", "cy.auditor@example.com",
                                    "ana.author@example.com")
REPR = re.compile(r"<(Customer|Role|User|Transaction|RecoveryCase|OutboxMessage|PolicyVersion)\b")
#: endpoint of every model view this module drives (test_every_model_view_is_covered keeps it complete)
COVERED = {"users", "customers", "gateway_accounts", "channel_accounts", "cases", "transactions", "messages",
           "audit_log"}


class Site:
    def __init__(self, url: str, app, ids: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
        self.url = url
        self.app = app
        self.ids = ids

    def read(self, fn):  # type: ignore[no-untyped-def]
        """``fn(db)`` in a fresh session: what the database says now, not what a cached row remembers."""
        from app.extensions import db

        with self.app.app_context():
            db.session.remove()
            try:
                return fn(db)
            finally:
                db.session.remove()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    from flask_migrate import upgrade

    from app import create_app
    from app.accounts.users import create_user
    from app.extensions import db
    from app.models import OutboxMessage
    from app.recovery.policies import save_draft, submit_draft
    from config import TestingConfig
    from tests.admin.world import STANDARD, build_world

    db_file = tmp_path_factory.mktemp("admin-forms") / "recoup.db"
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=f"sqlite:///{db_file}", WTF_CSRF_ENABLED=True)
    with app.app_context():
        upgrade()
        world = build_world()
        ids = {"case": world.case.id, "customer": world.customer_id, "transaction": world.case.transaction_id,
               "account": world.gateway_account_id,
               "message": db.session.query(OutboxMessage.id).filter_by(case_id=world.case.id).first()[0]}
        create_user(ADMIN, PASSWORD, ["admin"], name="Ada Admin")
        create_user(OPERATOR, PASSWORD, ["operator"], name="Olga Operator")
        create_user(AUDITOR, PASSWORD, ["auditor"], name="Cy Auditor")
        author = create_user(AUTHOR, PASSWORD, ["author"], name="Ana Author")
        save_draft("standard", STANDARD.replace("step after 1d via sms, whatsapp", "step after 12h via sms, whatsapp"),
                   actor=author)
        ids["version"] = submit_draft("standard", actor=author, note="earlier SMS").id
    with LiveServer(app) as server:
        yield Site(server.url, app, ids)


# -- helpers -----------------------------------------------------------------------------------------------------
def save(page) -> None:  # type: ignore[no-untyped-def]
    """Press the form's Save button and wait for the page it leads to."""
    with page.expect_navigation():
        page.locator("form.admin-form input[type=submit][value=Save]").click()


def flash(page) -> str:  # type: ignore[no-untyped-def]
    alert = page.locator(".alert").first
    alert.wait_for()
    return " ".join(str(alert.inner_text()).split())


def pick(page, field: str, text: str) -> None:  # type: ignore[no-untyped-def]
    """Choose an option of a Select2 multiple picker as a person does: type, then Enter."""
    box = page.locator(f"#s2id_{field} input.select2-input")
    box.click()
    box.type(text, delay=20)
    page.locator(".select2-result-label", has_text=text).first.wait_for()
    box.press("Enter")


def unpick(page, field: str, text: str) -> None:  # type: ignore[no-untyped-def]
    page.locator(f"#s2id_{field} li.select2-search-choice", has_text=text).locator("a.select2-search-choice-close") \
        .click()


def refused(page, site: Site, path: str) -> None:  # type: ignore[no-untyped-def]
    response = page.goto(site.url + path)
    assert response is not None and response.status == 403, (path, response and response.status)
    assert "Not allowed" in page.content()


def delete_row(page, list_path: str, row_text: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(list_path)
    row = page.locator("table.model-list tbody tr", has_text=row_text)
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        row.locator("form button, form [type=submit], a[title*='Delete']").first.click()


# -- the tests ---------------------------------------------------------------------------------------------------
def test_an_admin_adds_a_teammate_and_changes_their_roles(site: Site, browser) -> None:  # type: ignore[no-untyped-def]
    from app.models import User

    context, page = sign_in(browser, site, ADMIN)
    page.goto(f"{site.url}/admin/users/new/")
    page.fill("#email", "Tea.Mate@Example.com")
    page.fill("#name", "Tea Mate")
    pick(page, "roles", "author")
    pick(page, "roles", "approver")
    page.select_option("#locale", "es")
    page.fill("#timezone", "Europe/Madrid")
    page.fill("#password", "short")
    save(page)
    assert "Not saved" in flash(page) and "Failed to create record" not in page.content()
    assert "10 characters" in page.locator("#password ~ .invalid-feedback").inner_text()
    shot(page, "forms-01-user-refused-says-why")
    page.fill("#password", "a long enough secret")
    save(page)
    assert "successfully created" in flash(page)

    def teammate(db):  # type: ignore[no-untyped-def]
        user = db.session.query(User).filter_by(email="tea.mate@example.com").one()
        return user.name, user.locale, user.timezone, sorted(r.name for r in user.roles), user.active, user.id

    name, locale, zone, roles, active, user_id = site.read(teammate)
    assert (name, locale, zone, roles, active) == ("Tea Mate", "es", "Europe/Madrid", ["approver", "author"], True)
    row = page.locator("table.model-list tbody tr", has_text="tea.mate@example.com")
    assert "approver, author" in row.inner_text() and "<Role" not in page.content()

    page.goto(f"{site.url}/admin/users/edit/?id={user_id}")
    unpick(page, "roles", "approver")
    page.uncheck("#active")
    save(page)
    assert "successfully saved" in flash(page)
    _, _, _, roles, active, _ = site.read(teammate)
    assert roles == ["author"] and active is False
    shot(page, "forms-02-users-list")
    context.close()

    context, page = sign_in(browser, site, AUDITOR)
    assert page.goto(f"{site.url}/admin/users/").status == 200
    assert page.locator("a[href*='/admin/users/new/']").count() == 0
    for path in ("/admin/users/new/", f"/admin/users/edit/?id={user_id}"):
        refused(page, site, path)
    page.goto(f"{site.url}/admin/users/")
    assert post_from_page(page, "/admin/users/delete/", {"id": str(user_id)}) == 403
    shot(page, "forms-03-auditor-refused")
    context.close()
    context, page = sign_in(browser, site, OPERATOR)
    refused(page, site, "/admin/users/")
    context.close()


def test_an_operator_marks_a_vip_and_fixes_timezone_and_language(site: Site, browser) -> None:  # type: ignore[no-untyped-def]
    from app.models import Customer

    cid = site.ids["customer"]
    context, page = sign_in(browser, site, OPERATOR)
    page.goto(f"{site.url}/admin/customers/")
    page.locator(f"a[href*='/admin/customers/edit/?id={cid}']").first.click()
    page.wait_for_url(lambda url: f"/admin/customers/edit/?id={cid}" in url)
    if not page.is_checked("#vip"):
        page.check("#vip")
    page.fill("#timezone_explicit", "Mars/Olympus")
    save(page)
    assert "not a time zone" in flash(page)
    page.fill("#timezone_explicit", "Europe/Madrid")
    page.fill("#locale", "es_ES")
    page.fill("#tags", "wholesale, Partner")
    save(page)
    assert "successfully saved" in flash(page)

    def customer(db):  # type: ignore[no-untyped-def]
        row = db.session.get(Customer, cid)
        return row.vip, row.timezone_explicit, row.locale, row.tags

    assert site.read(customer) == (True, "Europe/Madrid", "es_ES", ["partner", "wholesale"])
    shot(page, "forms-04-operator-customer-saved")
    refused(page, site, "/admin/customers/new/")
    context.close()

    for who in (AUDITOR, AUTHOR):
        context, page = sign_in(browser, site, who)
        refused(page, site, f"/admin/customers/edit/?id={cid}")
        page.goto(f"{site.url}/admin/customers/")
        assert post_from_page(page, f"/admin/customers/edit/?id={cid}", {"vip": ""}) == 403
        context.close()
    assert site.read(customer)[0] is True


def test_an_admin_manages_gateway_and_channel_accounts(site: Site, browser) -> None:  # type: ignore[no-untyped-def]
    from app.models import ChannelAccount, GatewayAccount

    context, page = sign_in(browser, site, ADMIN)
    page.goto(f"{site.url}/admin/gateway_accounts/new/")
    page.fill("#name", "nmi-eu")
    page.fill("#api_url", "https://secure.nmi.com/api")
    page.fill("#security_key", "sk_eu_1234567890")
    save(page)
    assert "successfully created" in flash(page)
    gateway = site.read(lambda db: db.session.query(GatewayAccount).filter_by(name="nmi-eu").one().id)
    page.goto(f"{site.url}/admin/gateway_accounts/edit/?id={gateway}")
    assert page.input_value("#security_key") == ""  # a secret is never sent back to the browser
    page.uncheck("#enabled")
    save(page)
    assert "successfully saved" in flash(page)
    assert site.read(lambda db: db.session.get(GatewayAccount, gateway).enabled) is False
    assert "sk_eu_1234567890" not in page.content()

    page.goto(f"{site.url}/admin/channel_accounts/new/")
    page.fill("#name", "twilio-main")
    page.select_option("#channel", "sms")
    page.fill("#account_sid", "AC0001")
    page.fill("#from_number", "+15005550006")
    page.fill("#auth_token", "tok_1234567890")
    save(page)
    assert "successfully created" in flash(page)
    channel = site.read(lambda db: db.session.query(ChannelAccount).filter_by(name="twilio-main").one().id)
    page.goto(f"{site.url}/admin/channel_accounts/edit/?id={channel}")
    page.fill("#from_number", "+15005550007")
    save(page)
    assert site.read(lambda db: db.session.get(ChannelAccount, channel).settings["from_number"]) == "+15005550007"
    shot(page, "forms-05-channel-accounts")
    delete_row(page, f"{site.url}/admin/channel_accounts/", "twilio-main")
    assert "successfully deleted" in flash(page)
    assert site.read(lambda db: db.session.get(ChannelAccount, channel)) is None
    context.close()

    context, page = sign_in(browser, site, AUDITOR)
    for path in ("/admin/gateway_accounts/new/", f"/admin/gateway_accounts/edit/?id={gateway}",
                 "/admin/channel_accounts/new/"):
        refused(page, site, path)
    page.goto(f"{site.url}/admin/gateway_accounts/")
    assert post_from_page(page, "/admin/gateway_accounts/delete/", {"id": str(gateway)}) == 403
    context.close()


@pytest.mark.parametrize(("endpoint", "row_id"), [("cases", "case"), ("transactions", "transaction"),
                                                  ("messages", "message"), ("audit_log", None)])
def test_read_only_views_list_show_and_export_but_refuse_changes(site: Site, browser, endpoint,  # type: ignore[no-untyped-def]
                                                                 row_id) -> None:
    context, page = sign_in(browser, site, AUDITOR)
    listing = page.goto(f"{site.url}/admin/{endpoint}/")
    assert listing is not None and listing.status == 200
    assert page.locator("table.model-list tbody tr").count() >= 1
    assert page.locator(f"a[href*='/admin/{endpoint}/new/'], a[href*='/admin/{endpoint}/edit/']").count() == 0
    assert not REPR.search(page.locator("table.model-list").inner_text())  # no reprs
    identifier = site.ids[row_id] if row_id else 1
    details = page.goto(f"{site.url}/admin/{endpoint}/details/?id={identifier}")
    assert details is not None and details.status == 200 and page.locator("table").count() >= 1
    shot(page, f"forms-06-{endpoint}-details")
    page.goto(f"{site.url}/admin/{endpoint}/")
    with page.expect_download() as download:
        page.locator(f"a[href*='/admin/{endpoint}/export/csv/']").first.click()
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    assert len(rows) >= 2 and "<" not in "".join(rows[0])
    for who in (AUDITOR, ADMIN):
        if who == ADMIN:
            context.close()
            context, page = sign_in(browser, site, ADMIN)
        for path in (f"/admin/{endpoint}/new/", f"/admin/{endpoint}/edit/?id={identifier}"):
            refused(page, site, path)
    context.close()


def test_settings_profile_buttons_and_diff_read_right(site: Site, browser) -> None:  # type: ignore[no-untyped-def]
    from app.settings import get_setting

    context, page = sign_in(browser, site, ADMIN)
    page.goto(f"{site.url}/admin/settings/")
    form = page.locator("#setting-contact_windows")
    form.locator("input[name='contact_windows-rows-0-quiet_hours']").fill("9pm-8am")
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    error = page.locator("#setting-contact_windows .invalid-feedback").first
    assert "should look like" in error.inner_text()
    shot(page, "forms-07-settings-field-error")
    form = page.locator("#setting-contact_windows")
    form.locator("input[name='contact_windows-rows-0-quiet_hours']").fill("20:30-08:00")
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    assert "saved" in flash(page)
    assert site.read(lambda db: get_setting("contact_windows")["*"]["quiet_hours"]) == "20:30-08:00"

    page.click("#user-menu")
    page.click("#profile-link")
    page.wait_for_url("**/admin/profile/")
    assert "ada.admin@example.com" in page.locator("#profile-email").inner_text()
    page.fill("#timezone", "America/New_York")
    with page.expect_navigation():
        page.locator("#preferences-form button[type=submit]").click()
    assert "saved" in flash(page)
    page.goto(f"{site.url}/admin/audit_log/")
    assert "EST" in page.locator("table.model-list").inner_text()
    shot(page, "forms-08-profile-zone-in-lists")

    page.goto(f"{site.url}/admin/policies/")
    assert contrast(page, "a:has-text('Versions and approvals')") >= 4.5
    page.click("#user-menu")
    assert contrast(page, "#sign-out") >= 4.5
    page.goto(f"{site.url}/admin/")
    assert contrast(page, "#home-sign-out") >= 4.5

    active = site.read(lambda db: _active_version_id(db))
    page.goto(f"{site.url}/admin/policies/diff?a={active}&b={site.ids['version']}")
    changed = page.locator("#diff tr.diff-changed").first
    assert background(changed.locator("td.old")) == background(page.locator("#diff-legend .swatch.removed"))
    assert background(changed.locator("td.new")) == background(page.locator("#diff-legend .swatch.added"))
    shot(page, "forms-09-diff-legend")
    context.close()


def test_every_model_view_is_covered(site: Site) -> None:
    from flask_admin.contrib.sqla import ModelView

    admin = site.app.extensions["admin"][0]
    model_views = {view.endpoint for view in admin._views if isinstance(view, ModelView)}
    assert model_views <= COVERED, model_views - COVERED


# -- reading the page ------------------------------------------------------------------------------------------------
def _active_version_id(db) -> int:  # type: ignore[no-untyped-def]
    from app.models import Policy

    return int(db.session.query(Policy).filter_by(name="standard").one().active_version_id)


def background(locator) -> str:  # type: ignore[no-untyped-def]
    return str(locator.evaluate("e => getComputedStyle(e).backgroundColor"))


def contrast(page, selector: str) -> float:  # type: ignore[no-untyped-def]
    """WCAG contrast of an element's text against the background it sits on (walking up to the first opaque one):
    a button below 4.5 reads as disabled."""
    return float(page.locator(selector).first.evaluate("""e => {
        const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
        const lum = ([r, g, b]) => [r, g, b].map(c => { c /= 255; return c <= 0.03928 ? c / 12.92
                                                        : Math.pow((c + 0.055) / 1.055, 2.4); })
                                          .reduce((a, c, i) => a + c * [0.2126, 0.7152, 0.0722][i], 0);
        let node = e, bg = null;
        while (node && node.nodeType === 1) {
            const c = rgb(getComputedStyle(node).backgroundColor);
            if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) { bg = c; break; }
            node = node.parentElement;
        }
        const fg = lum(rgb(getComputedStyle(e).color)), back = lum(bg || [255, 255, 255]);
        return (Math.max(fg, back) + 0.05) / (Math.min(fg, back) + 0.05);
    }"""))
