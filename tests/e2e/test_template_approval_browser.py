"""Four-eyes approval of a message template in a real browser (Playwright driving Debian's Chromium) against the app
on a real server, with real dispatch runs to the SMTP simulator (issue 15, finding 5).

An author customises the payment-failed email and submits it: a dispatch run still sends the built-in text, and
the author's attempt to approve it is refused with 403. An admin who wrote a version of their own has no Approve
button, and a forged approval is refused in words. An approver approves the author's version: the next dispatch run
sends it, and the approver's attempt to write a template is refused with 403. Screenshots go to
test-artifacts/screenshots/.
"""

from __future__ import annotations

import email
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.policy import default as email_policy
from typing import Any

import pytest

from tests.e2e.harness import BROWSER, PASSWORD, LiveServer, post_from_page, shot, sign_in

pytestmark = BROWSER

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
EDIT = "/admin/templates/edit?name=payment_failed&channel=email&locale=en"
OWN = "/admin/templates/edit?name=reminder_short&channel=sms&locale=en"
NEW_BODY = "Hi {{ customer.first_name }}, NEWWORDING from the author: {{ payment_link }}"


class Site:
    def __init__(self, url: str, app: Any, channels: Any) -> None:
        self.url = url
        self.app = app
        self.channels = channels


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    from flask_migrate import upgrade

    from app import create_app
    from app.accounts.users import create_user
    from config import TestingConfig
    from tests.providers import ChannelSimulators

    db_file = tmp_path_factory.mktemp("template-approval") / "recoup.db"
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=f"sqlite:///{db_file}", WTF_CSRF_ENABLED=True)
    channels = ChannelSimulators().start()
    channels.configure(app)
    with app.app_context():
        upgrade()
        create_user("ana.author@example.com", PASSWORD, ["author"], name="Ana Author")
        create_user("abe.approver@example.com", PASSWORD, ["approver"], name="Abe Approver")
        create_user("ada.admin@example.com", PASSWORD, ["admin"], name="Ada Admin")
    try:
        with LiveServer(app) as server:
            yield Site(server.url, app, channels)
    finally:
        channels.stop()


def dispatched_text(site: Site) -> str:
    """One due payment-failed email, sent by a real dispatch run: the text the customer received."""
    from app.extensions import db
    from app.outbox.run import dispatch_due
    from tests.builders import make_message

    with site.app.app_context():
        message = make_message(channel="email", template="payment_failed", locale="en_US",
                               scheduled_for=NOW - timedelta(minutes=1))
        reference = f"m{message.id}"
        db.session.commit()
        assert dispatch_due(now=NOW)["sent"] == 1
    [mail] = [m for m in site.channels.smtp.received() if m["reference"] == reference]
    parsed: Any = email.message_from_string(mail["raw"], policy=email_policy)
    return str(parsed.get_body(preferencelist=("plain",)).get_content())


def newest_version_id(site: Site, name: str, channel: str) -> int:
    from app.extensions import db
    from app.models import MessageTemplate

    with site.app.app_context():
        template = db.session.query(MessageTemplate).filter_by(name=name, channel=channel).one()
        return int(template.versions[-1].id)


def test_an_edit_goes_out_only_after_someone_else_approves_it(site: Site, browser: Any) -> None:
    from playwright.sync_api import expect

    # -- the author customises the email and submits it; customers keep getting the built-in
    context, page = sign_in(browser, site, "ana.author@example.com")
    page.goto(f"{site.url}/admin/templates/?channel=email")
    page.locator('tr[data-template="payment_failed/email/en"]').get_by_role("link", name="Customise").click()
    page.locator("#body").fill(NEW_BODY)
    page.get_by_role("button", name="Save as a new version").click()
    expect(page.locator("body")).to_contain_text("Saved as version 1. It is a draft")
    version = page.locator("#template-version-1")
    expect(version).to_have_attribute("data-status", "draft")
    expect(version).to_contain_text("Written by Ana Author")
    expect(page.locator("#template-waiting")).to_contain_text("customers still receive the built-in text")
    assert page.locator("#body").input_value() == NEW_BODY  # the author goes on from their own text
    version.get_by_role("button", name="Submit for approval").click()
    expect(page.locator("body")).to_contain_text("Version 1 submitted: it goes out once someone else approves it.")
    expect(page.locator("#template-version-1")).to_have_attribute("data-status", "pending_approval")
    assert page.locator(".approve-version-form").count() == 0  # an author has no Approve button
    shot(page, "template-approval-submitted")

    sent = dispatched_text(site)
    assert "NEWWORDING" not in sent and "payment" in sent.lower()

    # -- the author may not approve it: 403
    page.goto(f"{site.url}{EDIT}")
    pending = newest_version_id(site, "payment_failed", "email")
    assert post_from_page(page, f"/admin/templates/versions/{pending}/approve", {}) == 403
    context.close()

    # -- an admin who wrote a version cannot approve it: no button, and a forged approval is refused in words
    context, page = sign_in(browser, site, "ada.admin@example.com")
    page.goto(f"{site.url}{OWN}")
    page.locator("#body").fill("{{ brand }}: ADAWORDING {{ payment_link }} Reply STOP to opt out")
    page.get_by_role("button", name="Save as a new version").click()
    page.locator("#template-version-1").get_by_role("button", name="Submit for approval").click()
    own = page.locator("#template-version-1")
    expect(own).to_have_attribute("data-status", "pending_approval")
    expect(own).to_contain_text("You wrote this version; someone else approves it.")
    assert own.locator(".approve-version-form").count() == 0
    own_id = newest_version_id(site, "reminder_short", "sms")
    page.evaluate("""id => {
        const form = document.createElement('form');
        form.method = 'post';
        form.action = `/admin/templates/versions/${id}/approve`;
        const token = document.createElement('input');
        token.type = 'hidden'; token.name = 'csrf_token';
        token.value = document.querySelector('meta[name="csrf-token"]').content;
        form.appendChild(token);
        document.body.appendChild(form);
        form.submit();
    }""", own_id)
    expect(page.locator("body")).to_contain_text(
        "You cannot approve your own version: someone else with the approver role must approve version 1.")
    expect(page.locator("#template-version-1")).to_have_attribute("data-status", "pending_approval")
    shot(page, "template-approval-own-version-refused")
    context.close()

    # -- an approver approves the author's version; the next run sends it
    context, page = sign_in(browser, site, "abe.approver@example.com")
    page.goto(f"{site.url}{EDIT}")
    assert page.get_by_role("button", name="Save as a new version").count() == 0
    expect(page.locator("#preview")).to_contain_text("NEWWORDING from the author")  # they see what they approve
    assert post_from_page(page, EDIT, {"body": "{{ payment_link }} approver's own words"}) == 403
    page.locator("#template-version-1").get_by_role("button", name="Approve").click()
    expect(page.locator("body")).to_contain_text("Version 1 approved: customers receive it from now on.")
    approved = page.locator("#template-version-1")
    expect(approved).to_have_attribute("data-status", "approved")
    expect(approved).to_contain_text("Approved by Abe Approver")
    expect(approved).to_contain_text("in use")
    assert page.locator("#template-waiting").count() == 0
    shot(page, "template-approval-approved")
    context.close()

    sent = dispatched_text(site)
    assert "NEWWORDING from the author" in sent
