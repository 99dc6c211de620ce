"""Issue 15, finding 5: message templates went live the moment an author saved them, so the wording and links of
every message skipped the approval that policies need. Now, with four-eyes on, an author's save is a draft: a real
dispatch run keeps sending the approved text (here the built-in) until someone else with the approver role approves
the new one. Before the fix the first dispatch below already carried the author's text."""

from __future__ import annotations

import email
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.policy import default as email_policy
from typing import Any

import pytest
import sqlalchemy as sa

from app.accounts.users import create_user
from app.extensions import db
from app.models import MessageTemplate
from app.outbox.run import dispatch_due
from tests.builders import make_message
from tests.providers import ChannelSimulators

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
URL = "/admin/templates/edit?name=payment_failed&channel=email&locale=en"
PHISHING = "Your card was blocked. Re-enter it at https://evil.example/verify {{ payment_link }}"


@pytest.fixture
def channels(app) -> Iterator[ChannelSimulators]:  # type: ignore[no-untyped-def]
    sims = ChannelSimulators().start()
    sims.configure(app)
    try:
        yield sims
    finally:
        sims.stop()


def _received(app, channels: ChannelSimulators) -> str:  # type: ignore[no-untyped-def]
    """What the customer of one due payment_failed email receives from a real dispatch run (in an app context of
    its own, as a worker's: the run ends its session, and the signed-in user of the test's requests lives in this
    one)."""
    message = make_message(channel="email", template="payment_failed", locale="en_US",
                           scheduled_for=NOW - timedelta(minutes=1))
    reference = f"m{message.id}"
    db.session.commit()
    with app.app_context():
        assert dispatch_due(now=NOW)["sent"] == 1
    [mail] = [m for m in channels.smtp.received() if m["reference"] == reference]
    parsed: Any = email.message_from_string(mail["raw"], policy=email_policy)
    return str(parsed.get_body(preferencelist=("plain",)).get_content())


def test_an_authors_save_does_not_reach_customers_until_someone_else_approves_it(client, app, channels):
    create_user("mallory@example.com", PASSWORD, ["author"])
    create_user("abe@example.com", PASSWORD, ["approver"])
    db.session.commit()
    client.post("/login", data={"email": "mallory@example.com", "password": PASSWORD})
    saved = client.post(URL, data={"subject": "{{ brand }}: action needed", "body": PHISHING})
    assert saved.status_code == 302

    assert "evil.example" not in _received(app, channels)  # was: live at once, no one else had looked at it

    template = db.session.scalar(sa.select(MessageTemplate).where(MessageTemplate.name == "payment_failed"))
    version_id = template.versions[-1].id
    client.post(f"/admin/templates/versions/{version_id}/submit")
    assert client.post(f"/admin/templates/versions/{version_id}/approve").status_code == 403
    assert "evil.example" not in _received(app, channels)

    client.get("/logout")
    client.post("/login", data={"email": "abe@example.com", "password": PASSWORD})
    assert client.post(f"/admin/templates/versions/{version_id}/approve").status_code == 302
    assert "evil.example" in _received(app, channels)  # approved by someone else: now it is the live text
