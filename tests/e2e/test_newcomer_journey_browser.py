"""Issue 13, "Done when" 2: the demo end to end, as a newcomer drives it in Chromium, on the embedded SQLite.

The admin fails a payment for a new Spanish customer from Demo control and moves the business clock until the
first reminder goes out; the customer reads it in the sandbox inbox (in Spanish), follows its link, is declined
once with a declining test card and pays with an approving one (receipt with its RC- reference); the case is
recovered in the admin. Then two more fetches and a day of clock: no new case and no further message for her.
An unhappy path: the reminder's link, opened again after paying, says "Ya está pagado" and offers no form.

Everything goes through pages (the admin, the payment page, the simulators' inboxes) except the fetches: the
demo control page has no "fetch now" button, so the test calls the fetch in-process as the periodic job does.
Screenshots go to test-artifacts/screenshots/journey-*.png.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa

from tests.e2e.harness import BROWSER, shot
from tests.e2e.test_demo_control_browser import (  # noqa: F401 (fixtures)
    Demo,
    advance_until_sent,
    demo,
    fail_a_payment,
    sign_in_as_admin,
)

pytestmark = [*BROWSER, pytest.mark.slow]

DECLINING_CARD = "4000000000000002"  # declines: do not honor (201), see docs/merchants.md
APPROVING_CARD = "4111111111111111"
REFERENCE = re.compile(r"RC-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{3}")
ENGLISH_REMINDER = ("didn't go through", "We tried to charge", "Pay now", "If you have already paid")


# -- what a person does ----------------------------------------------------------------------------------------
def open_demo_control(page: Any) -> None:
    page.click("nav >> text=Demo control")
    page.wait_for_selector("#fail-form")


def first_reminder(page: Any, case: str) -> tuple[str, Any]:
    """The channel of the case's first planned message (the standard policy's first step for her segment) and
    its row, once the clock has been moved until it is sent."""
    channel = page.locator(f"#{case} .demo-message").first.get_attribute("data-channel")
    row = advance_until_sent(page, case, channel)
    states = page.locator(f"#{case} .demo-message").evaluate_all("rows => rows.map(r => r.dataset.state)")
    assert states[0] == "sent" and set(states[1:]) == {"scheduled"}, f"the first step only: {states}"
    return channel, row


def open_in_new_tab(context: Any, click: Any) -> Any:
    with context.expect_page() as opened:
        click()
    tab = opened.value
    tab.wait_for_load_state()
    return tab


def read_the_spanish_reminder(context: Any, row: Any, name: str) -> tuple[Any, Any]:
    """From the case's message row to its mail in the sandbox inbox: (the inbox tab, the mail's frame)."""
    from playwright.sync_api import expect

    inbox = open_in_new_tab(context, row.locator(".inbox-link").click)
    subject = inbox.locator(".mail .hdr b").first
    expect(subject).to_contain_text("pago")
    expect(subject).to_contain_text("no se ha completado")
    mail = inbox.frame_locator(".mail iframe").first
    expect(mail.locator("body")).to_contain_text(name)
    text = mail.locator("body").inner_text()
    assert "el pago no se ha podido completar" in text and "Si ya ha pagado" in text, text
    for english in ENGLISH_REMINDER:
        assert english not in text and english not in subject.inner_text(), (english, text)
    return inbox, mail


def pay_with_new_card(pay: Any, number: str) -> None:
    """Open "Usar otra tarjeta", type a test card into the Collect.js fields and pay; wait for the result page."""
    form = pay.locator("form[data-tokenize=card]")
    if not form.is_visible():
        pay.get_by_text("Usar otra tarjeta", exact=True).click()
    pay.fill("#CollectJSccnumber", number)
    pay.fill("#CollectJSccexp", "12/30")
    pay.fill("#CollectJScvv", "123")
    form.locator("button[type=submit]").click()
    pay.wait_for_url(re.compile(r"/done/"))


def inbox_subjects(tab: Any) -> list[str]:
    tab.reload()
    return [s.strip() for s in tab.locator(".mail .hdr b").all_inner_texts()]


# -- what the test reads besides the pages -----------------------------------------------------------------------
def in_app(site: Demo, read: Any) -> Any:
    with site.app.app_context():
        return read()


def customer_by_email(email: str) -> Any:
    from app.extensions import db
    from app.models import Customer

    return db.session.scalar(sa.select(Customer).where(Customer.email == email))


def case_ids_of(customer_id: int) -> set[int]:
    from app.extensions import db
    from app.models import RecoveryCase

    return set(db.session.scalars(sa.select(RecoveryCase.id).where(RecoveryCase.customer_id == customer_id)))


def last_case_id() -> int:
    from app.extensions import db
    from app.models import RecoveryCase

    return int(db.session.scalar(sa.select(sa.func.max(RecoveryCase.id))) or 0)


def cases_after(case_id: int) -> list[tuple[int, int | None, str | None]]:
    """Cases opened after ``case_id``, for anyone: (id, customer id, order id of the failure)."""
    from app.extensions import db
    from app.models import RecoveryCase, Transaction

    rows = db.session.execute(sa.select(RecoveryCase.id, RecoveryCase.customer_id, Transaction.order_id)
                              .join(Transaction, RecoveryCase.transaction_id == Transaction.id)
                              .where(RecoveryCase.id > case_id))
    return [tuple(row) for row in rows]


def messages_of(customer_id: int) -> list[tuple[int, str, str, datetime | None, str | None]]:
    from app.extensions import db
    from app.models import OutboxMessage

    rows = db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.customer_id == customer_id)
                              .order_by(OutboxMessage.id))
    return [(m.id, m.channel, m.state, m.sent_at, m.template) for m in rows]


def fetch_like_the_scheduler(site: Demo) -> Any:
    """One run of what the periodic "fetch" job runs (workers.jobs.fetch_all:
    app.ingest.transactions.fetch_accounts); while the
    demo's own periodic fetch holds the account's lock, wait for it, as the next tick would."""
    from app.ingest.transactions import fetch_accounts

    for _ in range(40):
        [report] = in_app(site, lambda: fetch_accounts(name="nmi-demo"))
        if report.ok or "another fetch" not in (report.error or ""):
            return report
        time.sleep(0.5)
    raise AssertionError("the demo's periodic fetch kept the account locked")


def approved_payment_at(case_id: int) -> datetime:
    from app.extensions import db
    from app.models import Payment

    payment = db.session.scalar(sa.select(Payment).where(Payment.case_id == case_id, Payment.state == "approved"))
    assert payment is not None, f"case {case_id} has no approved payment"
    return payment.completed_at or payment.created_at


# -- the journey -------------------------------------------------------------------------------------------------
def test_a_newcomer_recovers_a_spanish_payment_and_nobody_is_dunned_after(demo, browser):  # noqa: F811
    from playwright.sync_api import expect

    name, email, phone = "Carmen Ruiz", "carmen.ruiz@example.com", "+34 611 222 333"
    context, admin = sign_in_as_admin(browser, demo)
    errors: list[str] = []
    context.on("page", lambda p: p.on("pageerror", lambda exc: errors.append(f"{p.url}: {exc}")))

    # 1. a payment fails for a new Spanish customer
    open_demo_control(admin)
    case = fail_a_payment(admin, name=name, email=email, phone=phone, country="ES", amount="49.00")
    card = admin.locator(f"#{case}")
    expect(card).to_contain_text(name)
    expect(card).to_contain_text("es_ES")
    expect(card).to_contain_text("first_time")
    case_id = int(card.get_attribute("data-case-id"))
    shot(admin, "journey-1-payment-failed")

    # 2. the clock moves on until the first reminder goes out
    channel, row = first_reminder(admin, case)
    assert channel == "email", f"the standard policy's first_time plan starts by email, not {channel}"
    expect(admin.locator(".alert-success")).to_contain_text("Business time is now")
    shot(admin, "journey-2-reminder-sent")

    # 3. the Spanish reminder in the sandbox inbox, and its link to the payment page (a tab of its own)
    inbox, mail = read_the_spanish_reminder(context, row, "Carmen")
    shot(inbox, "journey-3-inbox-reminder")
    pay = open_in_new_tab(context, mail.locator("a", has_text="49,00").first.click)
    assert "/pay/" in pay.url, pay.url
    expect(pay.locator("html")).to_have_attribute("lang", "es")
    expect(pay.get_by_role("heading", level=1)).to_have_text("Carmen, su pago no se pudo completar")
    expect(pay.locator(".amount").first).to_have_text("49,00\u00a0€")
    shot(pay, "journey-3-pay-page")

    # 4. a declining test card first: a Spanish refusal, nothing charged, the way back to paying
    last_case_before_paying = in_app(demo, last_case_id)  # the demo's store is still: nobody else fails now
    pay_with_new_card(pay, DECLINING_CARD)
    expect(pay.get_by_role("heading", level=1)).to_have_text("Su pago no se pudo completar")
    main = pay.locator("main").inner_text()
    assert "No se le ha cobrado nada." in main and "Qué puede hacer ahora" in main, main
    assert "did not go through" not in main and "Pago recibido" not in main, main
    shot(pay, "journey-4-declined")
    pay.get_by_role("link", name="Volver a las formas de pago").click()
    expect(pay.get_by_role("heading", level=1)).to_have_text("Carmen, su pago no se pudo completar")
    pay_with_new_card(pay, APPROVING_CARD)
    expect(pay.get_by_role("heading", level=1)).to_have_text("Pago recibido")
    reference = pay.locator("#receipt-reference").inner_text()
    assert REFERENCE.fullmatch(reference), reference
    shot(pay, "journey-4-receipt")

    # 5. the case is recovered in the admin (Demo control and the case's own page)
    admin.reload()
    expect(admin.locator(f"#{case}")).to_have_attribute("data-state", "recovered")
    expect(admin.locator(f"#{case} .case-state")).to_have_text("recovered")
    shot(admin, "journey-5-demo-control-recovered")
    admin.locator(f"#{case} .case-link").click()
    expect(admin.locator("body")).to_contain_text("recovered")
    shot(admin, "journey-5-case-recovered")

    # the receipt reaches her inbox too; from here on nothing more may
    for _ in range(20):
        if any("Pago recibido" in s for s in inbox_subjects(inbox)):
            break
        time.sleep(0.5)
    mails_after_paying = inbox_subjects(inbox)
    assert len(mails_after_paying) == 2 and "Pago recibido" in mails_after_paying[0], mails_after_paying
    customer_id = in_app(demo, lambda: customer_by_email(email).id)
    cases_after_paying = in_app(demo, lambda: case_ids_of(customer_id))
    paid_at = in_app(demo, lambda: approved_payment_at(case_id))

    # 6. two more fetches (they see her declined attempt on the payment page: Recoup's own charge, no failure),
    #    then a day of business clock from Demo control
    reports = [fetch_like_the_scheduler(demo) for _ in range(2)]
    assert all(r.ok for r in reports), [r.summary() for r in reports]
    assert any(r.result.own_charges for r in reports), [r.summary() for r in reports]
    admin.goto(f"{demo.url}/admin/demo/")
    with admin.expect_navigation():
        admin.click("#advance-day")
    expect(admin.locator(".alert-success")).to_contain_text("Business time is now")
    expect(admin.locator(f"#{case}")).to_have_attribute("data-state", "recovered")
    shot(admin, "journey-6-a-day-later")

    # her declined attempt came back from the gateway without her name on it (a token charge): a case opened for
    # it would not be hers by customer, so look at every case opened since she started paying
    assert in_app(demo, lambda: cases_after(last_case_before_paying)) == []
    assert in_app(demo, lambda: case_ids_of(customer_id)) == cases_after_paying
    messages = in_app(demo, lambda: messages_of(customer_id))
    assert [m for m in messages if m[2] in ("scheduled", "claimed", "sending", "paused")] == [], messages
    # nothing went to her after she paid but her receipt (an outbox row like her reminders: app.payments.receipts)
    assert [m[4] for m in messages if m[3] is not None and m[3] >= paid_at] == ["receipt"], messages
    assert inbox_subjects(inbox) == mails_after_paying
    shot(inbox, "journey-6-inbox-unchanged")
    sms = context.new_page()  # her phone: the SMS step the policy planned for day 2 was cancelled by the payment
    sms.goto(f"{demo.world['inboxes']['sms']}/{phone.replace(' ', '')}")
    expect(sms.locator(".phone h2")).to_have_text(phone.replace(" ", ""))
    expect(sms.locator(".phone")).to_contain_text("Nothing yet.")
    assert sms.locator(".bubble").count() == 0
    assert errors == [], errors
    context.close()


# -- the unhappy path --------------------------------------------------------------------------------------------
def test_the_reminders_link_opened_again_after_paying_says_already_paid_in_spanish(demo, browser):  # noqa: F811
    from playwright.sync_api import expect

    context, admin = sign_in_as_admin(browser, demo)
    open_demo_control(admin)
    case = fail_a_payment(admin, name="Javier Moreno", email="javier.moreno@example.com", phone="+34 622 333 444",
                          country="ES", amount="49.00")
    _channel, row = first_reminder(admin, case)
    inbox, mail = read_the_spanish_reminder(context, row, "Javier")
    pay = open_in_new_tab(context, mail.locator("a", has_text="49,00").first.click)
    shot(pay, "journey-unhappy-pay-page")
    pay.locator("form.js-pay:has(input[name=method][value=vault]) button[type=submit]").click()  # the card on file
    pay.wait_for_url(re.compile(r"/done/"))
    expect(pay.get_by_role("heading", level=1)).to_have_text("Pago recibido")
    reference = pay.locator("#receipt-reference").inner_text()
    pay.close()

    again = open_in_new_tab(context, mail.locator("a", has_text="49,00").first.click)  # the same reminder
    assert "/pay/" in again.url, again.url
    expect(again.locator("html")).to_have_attribute("lang", "es")
    expect(again.get_by_role("heading", level=1)).to_have_text("Ya está pagado")
    expect(again.locator("#receipt-reference")).to_have_text(reference)
    main = again.locator("main").inner_text()
    assert "No queda nada por pagar, así que este enlace ya no está disponible." in main, main
    assert again.locator("form").count() == 0 and again.get_by_role("button").count() == 0, main
    assert "49,00" not in main and "Already paid" not in main, main
    shot(again, "journey-unhappy-link-after-paying")
    admin.reload()
    expect(admin.locator(f"#{case}")).to_have_attribute("data-state", "recovered")
    inbox.close()
    context.close()
