"""The payment page in a real browser: Playwright driving Debian's Chromium at 375×812 (a phone).

Pays with the card on file and with a new card typed into the Collect.js fields (served by the NMI simulator),
saves screenshots of each page and result under ``test-artifacts/screenshots/``, runs axe-core on every page
(no serious or critical violations), then scans every text column of every table for anything that looks like a
card number or a CVV.
"""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa

from app.accounts.gateway_accounts import save_account
from app.extensions import db
from app.models import Payment, RecoveryCase
from app.payments.links import issue_payment_link
from app.web.pay import wrong_submissions
from sandbox.nmi.server import NmiSimulator
from sandbox.smtp.server import SmtpSimulator
from tests.builders import make_case, make_customer, make_message, make_transaction
from tests.e2e.harness import BROWSER, LiveServer, check_accessibility, shot

pytestmark = BROWSER

TYPED_CARD = "4111111111111111"
TYPED_CVV = "737"


@pytest.fixture(scope="module")
def sims():
    with NmiSimulator(seed=5) as nmi:
        smtp = SmtpSimulator()
        smtp.start()
        try:
            yield nmi, smtp
        finally:
            smtp.stop()


@pytest.fixture
def site(app, sims):
    """The app served over a real socket, its gateway and Collect.js pointing at the NMI simulator."""
    from app.outbox.senders import reset_senders

    nmi, smtp = sims
    nmi.clear()
    nmi.reset()
    smtp.reset()
    wrong_submissions.reset()
    server = LiveServer(app)
    base = server.url
    app.config.update(WTF_CSRF_ENABLED=True, SMTP_URL=smtp.url, PUBLIC_BASE_URL=base,
                      NMI_COLLECT_JS_URL=f"{nmi.url}/token/Collect.js",
                      NMI_TOKENIZATION_KEY=nmi.collect.tokenization_key, MERCHANT_NAME="Acme Fitness")
    reset_senders(app)
    account = save_account("nmi-browser", "nmi", credentials={"security_key": nmi.security_key},
                           api_url=f"{nmi.url}/api", settings={"client": {"timeout": 5.0, "max_attempts": 2}})
    db.session.commit()
    try:
        with server:
            yield base, account, nmi, smtp
    finally:
        app.config.update(WTF_CSRF_ENABLED=False)
        reset_senders(app)


def a_case(app, account, nmi, *, vault, decline_code, first_name="Ana", offers=("partial_payment", "pay_later",
           "bank_transfer")):
    customer = make_customer(first_name=first_name, vault_id=vault, card_masked="4xxxxxxxxxxx4242",
                             email=f"{vault.lower()}@example.com")
    tx = make_transaction(gateway_account_id=account.id, customer=customer, amount_minor=4900,
                          decline_code=decline_code, order_description="Gold membership, monthly",
                          raw={"cc_type": "Visa"})
    case = make_case(transaction=tx, plan={"offers": list(offers), "offer_terms": {"pay_later": "P7D"},
                                           "timezone": "America/New_York", "steps": []})
    message = make_message(case=case, state="sent", address=customer.email)
    make_message(case=case, state="scheduled", step_n=2)
    nmi.set_vault_outcome(vault, None)
    token = issue_payment_link(case, app.config["SECRET_KEY"], message_id=message.id)
    db.session.commit()
    return case, message, token


def check_tap_targets(page) -> None:
    small = page.evaluate("""() => Array.from(
            document.querySelectorAll('button, a.button, summary, input:not([type=hidden])'))
        .filter(e => e.offsetParent !== null)
        .map(e => ({text: (e.innerText || e.id || e.name || '').slice(0, 40), h: e.getBoundingClientRect().height,
                    w: e.getBoundingClientRect().width}))
        .filter(r => r.h < 44 || r.w < 44)""")
    assert not small, small
    # readable without zooming: nothing wider than the phone, body text at least 16 px
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)") >= 16


def phone(browser):
    return browser.new_context(viewport={"width": 375, "height": 812}, device_scale_factor=2, is_mobile=True,
                               has_touch=True, bypass_csp=True, locale="en-US")


def test_pay_with_the_card_on_file_and_with_a_new_card(app, browser, site):
    base, account, nmi, smtp = site
    context = phone(browser)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # 1. the card on file (a soft decline: insufficient funds)
    case1, message1, token1 = a_case(app, account, nmi, vault="CV-B1", decline_code="202")
    page.goto(f"{base}/pay/{token1}")
    assert page.get_by_role("heading", level=1).inner_text().startswith("Ana, your payment did not go through")
    assert page.locator(".amount").first.inner_text() == "$49.00"
    assert "not enough money" in page.inner_text("main")
    check_tap_targets(page)
    shot(page, "pay-card-on-file-page")
    check_accessibility(page, "pay-card-on-file-page")
    page.get_by_role("button", name="Pay $49.00").first.click()
    page.wait_for_url(re.compile(r"/done/"))
    assert page.get_by_role("heading", level=1).inner_text() == "Payment received"
    assert "A receipt is on its way to c" in page.inner_text("main")
    shot(page, "pay-card-on-file-result")
    check_accessibility(page, "pay-card-on-file-result")

    # 2. a new card, typed into the Collect.js fields (the card on file is expired: a hard decline)
    case2, message2, token2 = a_case(app, account, nmi, vault="CV-B2", decline_code="223", first_name="Bruno")
    page.goto(f"{base}/pay/{token2}")
    assert "has expired" in page.inner_text("main")
    assert page.get_by_role("button", name="Pay $49.00").count() == 1  # only the new-card form's button
    page.get_by_label("Card number").fill(TYPED_CARD)
    page.get_by_label("Expiry date").fill("12/30")
    page.get_by_label("Security code").fill(TYPED_CVV)
    check_tap_targets(page)
    shot(page, "pay-new-card-page")
    check_accessibility(page, "pay-new-card-page")
    with page.expect_request(re.compile(r"/pay/")) as submitted:
        page.get_by_role("button", name="Pay $49.00").click()
    posted = submitted.value.post_data or ""
    assert TYPED_CARD not in posted and TYPED_CVV not in posted.split("payment_token")[0]
    assert "payment_token=" in posted
    page.wait_for_url(re.compile(r"/done/"))
    assert page.get_by_role("heading", level=1).inner_text() == "Payment received"
    shot(page, "pay-new-card-result")
    check_accessibility(page, "pay-new-card-result")

    # 3. a declined card shows what to try next; an unusable link shows a friendly page
    case3, _, token3 = a_case(app, account, nmi, vault="CV-B3", decline_code="202", first_name="Chen")
    nmi.set_vault_outcome("CV-B3", "202")
    page.goto(f"{base}/pay/{token3}")
    page.get_by_role("button", name="Pay $49.00").first.click()
    page.wait_for_url(re.compile(r"/done/"))
    assert "What you can try next" in page.inner_text("main")
    shot(page, "pay-declined-result")
    check_accessibility(page, "pay-declined-result")
    page.goto(f"{base}/pay/{token1}")  # paid: the link is closed
    assert "not available" in page.inner_text("main")
    shot(page, "pay-link-not-available")
    check_accessibility(page, "pay-link-not-available")
    assert errors == []
    context.close()

    db.session.expire_all()
    for case, message in ((case1, message1), (case2, message2)):
        case = db.session.get(RecoveryCase, case.id)
        assert case.state == "recovered" and case.recovered_message_id == message.id
    assert db.session.get(RecoveryCase, case3.id).state == "open"
    methods = sorted(db.session.scalars(sa.select(Payment.method).where(Payment.state == "approved")))
    assert methods == ["new_card", "vault"]
    assert len([t for t in nmi.transactions if t.sale_action and t.condition != "failed"]) == 2
    assert nmi.vault("CV-B2").card.cc_number.endswith("1111")
    assert len(smtp.messages) == 2  # the receipts

    assert_no_card_data_stored(app)


# -- the scan ----------------------------------------------------------------------------------------------------
_DIGITS = re.compile(r"(?<![0-9])[2-6](?:[ -]?[0-9]){12,18}(?![0-9])")
_CVV = re.compile(r"""(?ix)["']?\b(cvv2?|cvc2?|csc|cid|card_?code|security_?code|card_?verification)\b["']?
                      \s*[:=]\s*["']?\d{3,4}\b""")
_CVV_COLUMN = re.compile(r"(?i)cvv|cvc|csc|security_?code|card_?code")
_TEXT_TYPES = (sa.String, sa.Text, sa.JSON, sa.Enum)


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


#: a hex digest (a token's or short code's SHA-256): its digit runs are chance, not data (one in a few hundred
#: holds a run of 13 or more digits that passes Luhn)
_HEX_DIGEST = re.compile(r"(?<![0-9A-Za-z])[0-9a-f]{32,}(?![0-9A-Za-z])")


def card_numbers_in(text: str) -> list[str]:
    found = []
    for match in _DIGITS.finditer(_HEX_DIGEST.sub(" ", text)):
        digits = re.sub(r"[ -]", "", match.group(0))
        if 13 <= len(digits) <= 19 and luhn(digits):
            found.append(digits)
    return found


def test_the_scan_finds_what_it_looks_for():
    assert card_numbers_in('{"n": "4111 1111 1111 1111"}') == ["4111111111111111"]
    assert card_numbers_in("5431-1111-1111-1111") == ["5431111111111111"]
    assert card_numbers_in("4xxxxxxxxxxx1111 411111******1111 10384700042 4111111111111112") == []
    digest = "ab4111111111111111cdef0123456789abcdef0123456789abcdef0123456789"  # a hash whose digits pass Luhn
    assert card_numbers_in(f'{{"short_code_hash": "{digest}"}}') == []
    assert card_numbers_in(f"{digest} 4111111111111111") == ["4111111111111111"]
    assert _CVV.search('{"cvv": "123"}') and _CVV.search("security_code=7372") and not _CVV.search("cvv_response=M")


def assert_no_card_data_stored(app) -> None:
    """Every text-like column of every table in the live database: no card number, no CVV, no CVV column."""
    engine = db.engine
    inspector = sa.inspect(engine)
    problems: list[str] = []
    scanned = 0
    with engine.connect() as conn:
        for table in inspector.get_table_names():
            columns = inspector.get_columns(table)
            for column in columns:
                if _CVV_COLUMN.search(column["name"]):
                    problems.append(f"{table}.{column['name']}: a column for card security codes")
            text_columns = [c["name"] for c in columns if isinstance(c["type"], _TEXT_TYPES)
                            or type(c["type"]).__name__.upper() in {"LONGTEXT", "MEDIUMTEXT", "TINYTEXT", "JSON"}]
            if not text_columns:
                continue
            quoted = ", ".join(engine.dialect.identifier_preparer.quote(c) for c in text_columns)
            table_q = engine.dialect.identifier_preparer.quote(table)
            for row in conn.execute(sa.text(f"SELECT {quoted} FROM {table_q}")):
                for name, value in zip(text_columns, row, strict=True):
                    if value is None:
                        continue
                    text = value if isinstance(value, str) else json.dumps(value, default=str)
                    scanned += 1
                    for number in card_numbers_in(text):
                        problems.append(f"{table}.{name}: card number {number[:6]}…{number[-4:]}")
                    if _CVV.search(text):
                        problems.append(f"{table}.{name}: looks like a CVV: {text[:80]!r}")
                    if TYPED_CARD in re.sub(r"\D", "", text):
                        problems.append(f"{table}.{name}: holds the typed card number")
    assert scanned > 50, "the scan looked at almost nothing"
    assert not problems, "\n".join(problems)
