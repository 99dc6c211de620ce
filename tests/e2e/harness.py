"""What every browser test shares: Debian's Chromium (launched as this machine needs it), the app served over a real
socket, and screenshots in test-artifacts/screenshots/. The ``browser`` fixture is in ``conftest.py``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.live_server import LiveServer  # noqa: F401 (the browser tests serve the app with it)

CHROMIUM = "/usr/bin/chromium"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
#: the password of the users the browser tests create
PASSWORD = "correct horse battery"
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
#: headless on a machine with no screen, no sandbox (root in a container), nothing fetched from the network
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]
#: a browser test module's marks: skipped where Chromium is missing, except in CI, which must run them
BROWSER = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists() and not IN_CI, reason="Debian's Chromium is not installed"),
]


@contextmanager
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing and CI is set: refusing to skip the browser tests")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(browser: Any, site: Any, email: str, locale: str = "en-US", password: str = PASSWORD) -> tuple[Any, Any]:
    """A new browser context signed in as ``email`` on ``site`` (anything with a ``url``): (context, page)."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, locale=locale)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"{site.url}/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{site.url}/admin/")
    return context, page


def post_from_page(page: Any, path: str, data: dict[str, str]) -> int:
    """A change attempt as the browser would send it, with the page's CSRF token: returns the status."""
    return int(page.evaluate(
        """async ([path, data]) => {
            const token = document.querySelector('meta[name="csrf-token"]').content;
            const body = new URLSearchParams({...data, csrf_token: token});
            const r = await fetch(path, {method: 'POST', body, redirect: 'manual', headers: {'X-CSRFToken': token}});
            return r.status;
        }""",
        [path, data],
    ))
