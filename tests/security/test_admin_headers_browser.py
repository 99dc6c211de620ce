"""The admin's Content-Security-Policy blocks nothing the admin itself uses (a real browser reports every violation),
and the live template preview still works under it (issue 15: security headers on admin pages)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import BROWSER, PASSWORD, LiveServer, sign_in

pytestmark = BROWSER

PAGES = ["/admin/", "/admin/cases/", "/admin/customers/", "/admin/users/", "/admin/users/new/",
         "/admin/policies/", "/admin/templates/", "/admin/settings/", "/admin/audit_log/",
         "/admin/templates/edit?name=payment_failed&channel=email&locale=en"]


class Site:
    def __init__(self, url: str) -> None:
        self.url = url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from tests.e2e.harness import chromium

    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    from flask_migrate import upgrade

    from app import create_app
    from app.accounts.users import create_user
    from config import TestingConfig
    from tests.admin.world import build_world

    db_file = tmp_path_factory.mktemp("csp") / "recoup.db"
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=f"sqlite:///{db_file}", WTF_CSRF_ENABLED=True)
    with app.app_context():
        upgrade()
        build_world()
        create_user("ada.admin@example.com", PASSWORD, ["admin"], name="Ada Admin")
    with LiveServer(app) as server:
        yield Site(server.url)


def test_the_admin_runs_under_its_content_security_policy(site, browser):
    context, page = sign_in(browser, site, "ada.admin@example.com")
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        for path in PAGES:
            response = page.goto(site.url + path)
            assert response is not None and response.status == 200, path
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"], path
        # the preview (a script fetching JSON, the HTML into a sandboxed srcdoc frame) still renders
        from playwright.sync_api import expect

        page.goto(site.url + PAGES[-1])
        expect(page.locator("#preview")).to_contain_text("payment")
        assert violations == []
    finally:
        context.close()
