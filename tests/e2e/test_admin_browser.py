"""The admin in a real browser (Playwright driving Debian's Chromium) against the app served by a real server.

An author signs in, types a policy with a mistake, sees the error at its line and column, fixes it, runs the
simulation and submits; an approver approves and activates it; the diff and the history show both; an auditor
opens everything and every attempt to change something gets 403. Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.harness import BROWSER, PASSWORD, LiveServer, post_from_page, shot, sign_in

pytestmark = BROWSER


class Site:
    def __init__(self, url: str, app, world) -> None:  # type: ignore[no-untyped-def]
        self.url = url
        self.app = app
        self.world = world


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    from flask_migrate import upgrade

    from app import create_app
    from app.accounts.users import create_user
    from config import TestingConfig
    from tests.admin.world import build_world

    db_file = tmp_path_factory.mktemp("browser") / "recoup.db"
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=f"sqlite:///{db_file}", WTF_CSRF_ENABLED=True)
    with app.app_context():
        upgrade()
        world = build_world()
        world_ids = {"case": world.case.id, "customer": world.customer_id, "task": world.escalation.id,
                     "account": world.gateway_account_id}
        create_user("ana.author@example.com", PASSWORD, ["author"], name="Ana Author")
        create_user("bo.approver@example.com", PASSWORD, ["approver"], name="Bo Approver")
        create_user("cy.auditor@example.com", PASSWORD, ["auditor"], name="Cy Auditor")
    with LiveServer(app) as server:
        yield Site(server.url, app, world_ids)


def test_author_approver_and_auditor(site: Site, browser) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    from tests.admin.world import STANDARD

    changed = STANDARD.replace("step after 1d via sms, whatsapp", "step after 12h via sms, whatsapp")
    lines = changed.splitlines()
    mistake_line = next(n for n, line in enumerate(lines, 1) if 'via email template "vip_followup"' in line)
    with_mistake = "\n".join(line.replace(" via email", " vai email") if n == mistake_line else line
                             for n, line in enumerate(lines, 1)) + "\n"
    mistake_col = lines[mistake_line - 1].index("via") + 1

    # -- the author writes, makes a mistake, sees it at its line and column, fixes it, simulates, submits
    context, page = sign_in(browser, site, "ana.author@example.com")
    page.click("text=Policies")
    page.click("text=Open editor")
    editor = page.locator("#source")
    editor.fill("")
    editor.fill(with_mistake[:-40])
    editor.press("End")
    page.keyboard.type(with_mistake[-40:], delay=5)  # the last lines typed key by key: the check is debounced
    problem = page.locator(f'.pe-problem-error[data-line="{mistake_line}"]')
    problem.wait_for()
    # on a slow machine a check may run while the last characters are still being typed: wait for the check of
    # the whole text, which finds exactly the one mistake
    expect(page.locator(".pe-ln-error")).to_have_count(1, timeout=15_000)
    assert f"Line {mistake_line}, column {mistake_col}" in problem.inner_text()
    assert '"vai"' in problem.inner_text() and 'did you mean "via"' in problem.inner_text()
    assert page.locator(".pe-ln-error").inner_text() == str(mistake_line)
    assert page.locator(".pe-highlight .pe-error").first.inner_text() == "vai"
    assert page.locator(".pe-highlight .t-kw").count() > 20  # keywords are highlighted
    shot(page, "01-author-sees-the-mistake")

    problem.locator("button").click()  # jumps to the mistake
    for _ in range(3):
        page.keyboard.press("Delete")
    page.keyboard.type("via")
    page.locator(".pe-ok").wait_for()
    expect(page.locator(".pe-ln-error")).to_have_count(0, timeout=15_000)

    page.select_option("#sim-days", "30")
    page.click("#run-simulation")
    result = page.locator("#simulation-result")
    result.wait_for()
    assert "Cases per segment" in result.inner_text() and "standard v1" in result.inner_text()
    assert page.locator("#sim-overview tbody tr").count() >= 6
    shot(page, "02-author-simulation")

    page.fill("#note", "SMS reminder half a day earlier for high-value cases")
    page.click("#submit-approval")
    page.wait_for_url("**/admin/policies/history/standard")
    assert page.locator("#version-2").get_attribute("data-status") == "pending_approval"
    assert "Ana Author" in page.locator("#version-2").inner_text()
    shot(page, "03-author-submitted")
    context.close()

    # -- the approver approves with a reason and activates
    context, page = sign_in(browser, site, "bo.approver@example.com")
    page.goto(f"{site.url}/admin/policies/history/standard")
    row = page.locator("#version-2")
    row.locator("input[name=reason]").fill("Checked the simulation: same volume, earlier reminder")
    row.locator("button:has-text('Approve')").click()
    page.locator(".alert-success").wait_for()
    page.locator("#version-2 button:has-text('Activate')").click()
    page.locator(".alert-success").wait_for()
    assert page.locator("#version-2").get_attribute("data-status") == "active"
    assert page.locator("#version-1").get_attribute("data-status") == "superseded"
    history = page.locator("#version-2").inner_text()
    assert "Ana Author" in history and "Bo Approver" in history and "Checked the simulation" in history
    shot(page, "04-approver-activated")

    page.select_option("#diff-a", label="v1")
    page.select_option("#diff-b", label="v2")
    page.click("#compare-form button")
    page.wait_for_url("**/admin/policies/diff?**")
    changed_rows = page.locator("#diff tr.diff-changed")
    assert changed_rows.count() == 1
    assert "1d" in changed_rows.locator("td.old").inner_text() and "12h" in changed_rows.locator("td.new").inner_text()
    header = page.locator("#diff thead").inner_text()
    assert "Ana Author" in header and "Bo Approver" in header
    shot(page, "05-diff")
    context.close()

    # -- the auditor opens everything, changes nothing
    context, page = sign_in(browser, site, "cy.auditor@example.com")
    ids = site.world
    pages = ["/admin/", "/admin/policies/", "/admin/policies/edit/standard", "/admin/policies/history/standard",
             "/admin/templates/", "/admin/cases/", f"/admin/cases/timeline/{ids['case']}", "/admin/escalations/",
             "/admin/customers/", "/admin/transactions/", "/admin/messages/", "/admin/settings/",
             "/admin/gateway_accounts/", "/admin/users/", "/admin/audit_log/"]
    for path in pages:
        response = page.goto(site.url + path)
        assert response is not None and response.status == 200, path
        assert page.locator("#save-draft, .approve-form, .activate-form").count() == 0, path
    page.goto(f"{site.url}/admin/cases/timeline/{ids['case']}")
    shot(page, "06-auditor-case-timeline")
    page.goto(f"{site.url}/admin/audit_log/")
    page.click("#verify-chain")
    assert page.locator("#verify-result").get_attribute("data-ok") == "1"
    shot(page, "07-auditor-verifies-the-audit-log")

    for path in ("/admin/gateway_accounts/new/", f"/admin/customers/edit/?id={ids['customer']}",
                 "/admin/users/edit/?id=1"):
        response = page.goto(site.url + path)
        assert response is not None and response.status == 403, path
    shot(page, "08-auditor-refused")
    page.goto(f"{site.url}/admin/policies/history/standard")
    attempts = {
        "/admin/policies/edit/standard": {"source": changed},
        "/admin/policies/submit/standard": {"note": "sneaky"},
        "/admin/policies/rollback/standard": {"to_number": "1", "reason": "sneaky"},
        f"/admin/escalations/{ids['task']}/resolve": {},
        "/admin/settings/policy_four_eyes": {"value": "false"},
        f"/admin/customers/edit/?id={ids['customer']}": {"vip": "y"},
        "/admin/gateway_accounts/delete/": {"id": str(ids["account"])},
    }
    for path, data in attempts.items():
        assert post_from_page(page, path, data) == 403, path
    context.close()

    # -- and in Spanish
    context, page = sign_in(browser, site, "cy.auditor@example.com", locale="es-ES")
    page.goto(f"{site.url}/admin/policies/edit/standard")
    assert "Simular" in page.content() or "simulación" in page.content()
    shot(page, "09-auditor-in-spanish")
    context.close()
