"""Issue 13, points 4 and 7, in a real browser (Playwright driving Debian's Chromium), on SQLite and MariaDB.

A Spanish customer follows the short link of her SMS from a phone set to English: the payment page is Spanish and
wears the merchant's logo (from another origin, allowed by the page's CSP) and colour; she pays, the receipt shows
its short reference and a way back to the shop; the same link then says "Ya está pagado" with that reference, and an
expired link says it has expired, in Spanish. An author opens the template editor: it starts from the live Spanish
text, and after saving it the standard policy is still valid in the policy editor.
"""

from __future__ import annotations

import re
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from app.extensions import db
from app.messages.default_templates import DEFAULTS
from app.models import Customer, PaymentLink
from app.models.types import utcnow
from app.payments.links import short_url
from app.settings import save_setting
from tests.e2e.harness import BROWSER, check_accessibility, shot
from tests.e2e.test_pay_browser import a_case, phone, sims, site  # noqa: F401

pytestmark = BROWSER
BRAND = "#0f766e"


def _png(width: int = 120, height: int = 40) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes((15, 118, 110)) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def logo_origin():
    """The merchant's logo on another origin (their CDN), as a real shop has it."""
    image = _png()

    class Logo(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(image)))
            self.end_headers()
            self.wfile.write(image)

        def log_message(self, *args):  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Logo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def _branded(logo_origin):
    for key, value in (("merchant_name", "Northwind Outfitters"), ("merchant_brand_colour", BRAND),
                       ("merchant_logo_url", f"{logo_origin}/logo.png"),
                       ("merchant_website_url", "https://northwind.example/account"),
                       ("merchant_support_email", "help@northwind.example")):
        save_setting(key, value, actor="setup")


def _spanish(case):
    customer = db.session.get(Customer, case.customer_id)
    customer.locale, customer.locale_source = "es_ES", "manual"
    db.session.commit()


def _strict_phone(browser):  # noqa: F811
    # an English phone that keeps the page's CSP (axe-core cannot be injected here): the logo from the shop's
    # origin and the brand stylesheet must pass it
    context = browser.new_context(viewport={"width": 375, "height": 812}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True, locale="en-US")
    context.set_default_timeout(15_000)
    return context


def _check_branding(browser, url):  # noqa: F811
    context = _strict_phone(browser)
    page = context.new_page()
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(url)
    assert page.evaluate("document.querySelector('header img.logo').naturalWidth") == 120
    assert page.locator("header img.logo").get_attribute("alt") == "Northwind Outfitters"
    button = page.get_by_role("button", name=re.compile(r"Pagar 49,00")).first
    assert button.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(15, 118, 110)"
    assert refused == []
    context.close()


def test_a_spanish_customer_pays_from_a_short_link_and_revisits_paid_and_expired_links(
        app, browser, site, logo_origin):  # noqa: F811
    base, account, nmi, _smtp = site
    _branded(logo_origin)
    case, _message, token = a_case(app, account, nmi, vault="CV-ES1", decline_code="202", first_name="Lucía")
    _spanish(case)
    short = short_url(base, token, app.config["SECRET_KEY"])
    assert re.fullmatch(rf"{re.escape(base)}/p/[0-9A-Za-z]{{10}}", short)
    _check_branding(browser, short)
    context = phone(browser)  # English, as the customer's phone is
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(short)
    assert "/pay/" in page.url and page.locator("html").get_attribute("lang") == "es"
    assert page.get_by_role("heading", level=1).inner_text().startswith("Lucía, su pago no se pudo completar")
    button = page.get_by_role("button", name=re.compile(r"Pagar 49,00")).first
    shot(page, "trust-es-pay-page")
    check_accessibility(page, "trust-es-pay-page")
    button.click()
    page.wait_for_url(re.compile(r"/done/"))
    assert page.get_by_role("heading", level=1).inner_text() == "Pago recibido"
    reference = page.locator("#receipt-reference").inner_text()
    assert re.fullmatch(r"RC-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{3}", reference)
    back = page.get_by_role("link", name="Volver a Northwind Outfitters")
    assert back.get_attribute("href") == "https://northwind.example/account"
    shot(page, "trust-es-receipt")
    check_accessibility(page, "trust-es-receipt")

    page.goto(short)  # the same SMS link, after paying
    assert page.locator("html").get_attribute("lang") == "es"
    assert page.get_by_role("heading", level=1).inner_text() == "Ya está pagado"
    assert page.locator("#receipt-reference").inner_text() == reference
    assert "ha caducado" not in page.inner_text("main") and "49,00" not in page.inner_text("main")
    shot(page, "trust-es-already-paid")
    check_accessibility(page, "trust-es-already-paid")

    expired_case, _, expired_token = a_case(app, account, nmi, vault="CV-ES2", decline_code="202",
                                            first_name="Lucía")
    _spanish(expired_case)
    db.session.execute(sa.update(PaymentLink).where(PaymentLink.case_id == expired_case.id)
                       .values(expires_at=utcnow()))
    db.session.commit()
    page.goto(short_url(base, expired_token, app.config["SECRET_KEY"]))
    assert page.get_by_role("heading", level=1).inner_text() == "Este enlace de pago ha caducado"
    assert "Ya está pagado" not in page.inner_text("main") and "help@northwind.example" in page.inner_text("main")
    shot(page, "trust-es-expired")
    check_accessibility(page, "trust-es-expired")
    assert errors == []
    context.close()


def test_the_template_editor_starts_from_the_live_text_and_saving_keeps_the_policy_valid(
        app, browser, site):  # noqa: F811
    from app.accounts.users import create_user
    from app.recovery.policies import activate_text
    from tests.admin.world import STANDARD

    base = site[0]
    activate_text("standard", STANDARD, actor=None, note="the starting policy")
    create_user("ana.author@example.com", "correct horse battery", ["author"], name="Ana Author")
    db.session.commit()
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, locale="en-US")
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"{base}/login")
    page.fill("#email", "ana.author@example.com")
    page.fill("#password", "correct horse battery")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/admin/")

    page.goto(f"{base}/admin/templates/?channel=sms")
    row = page.locator('tr[data-template="reminder_short/sms/es"]')
    assert "built-in" in row.inner_text()
    row.get_by_role("link", name="Customise").click()
    live = DEFAULTS[("reminder_short", "sms", "es")].body
    assert page.locator("#body").input_value() == live  # what Spanish customers receive today, not a poorer text
    assert "built-in text customers receive now" in page.locator("#template-origin").inner_text()
    # a locator's wait, not wait_for_function: that evaluates a string, which the admin's CSP (no 'unsafe-eval') refuses
    expect(page.locator("#preview")).to_contain_text("Baja: responda STOP")
    assert page.locator("#sms-info").inner_text().startswith("1 segment(s)")
    assert "sigue pendiente" in page.locator("#preview").inner_text()
    page.locator("#body").fill(live.replace("recordatorio", "aviso"))
    page.get_by_role("button", name="Save as a new version").click()
    page.wait_for_selector("text=Saved as version 1.")
    shot(page, "trust-template-editor-saved")

    page.goto(f"{base}/admin/policies/edit/standard")
    page.wait_for_selector("#policy-editor[data-checked]")
    assert page.locator(".pe-problem-error").count() == 0
    assert "unknown template" not in page.locator("#problems").inner_text()
    context.close()
