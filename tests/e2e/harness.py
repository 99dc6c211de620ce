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


AXE = Path(__file__).with_name("vendor") / "axe.min.js"


def check_accessibility(page: Any, name: str) -> None:
    """axe-core on the page as it is: nothing serious or critical (the full report is saved beside the shots)."""
    import json

    page.add_script_tag(path=str(AXE))
    results = page.evaluate("""async () => {
        const r = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a',
            'wcag21aa', 'wcag22aa', 'best-practice']}, resultTypes: ['violations']});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                       nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}));
    }""")
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / f"{name}.axe.json").write_text(json.dumps(results, indent=2))
    bad = [v for v in results if v["impact"] in ("serious", "critical")]
    assert not bad, f"{name}: {json.dumps(bad, indent=2)}"


def canvas_drawn(page: Any, selector: str) -> bool:
    """Some pixel of the canvas is painted (the chart drew, not just an empty box)."""
    return bool(page.evaluate("""(sel) => {
        const c = document.querySelector(sel); if (!c || !c.width) return false;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) return true;
        return false;
    }""", selector))
