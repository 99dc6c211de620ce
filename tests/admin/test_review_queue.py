"""The review queue: messages whose outcome only a person can settle, and the two decisions an operator takes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry, MessageEvent, OutboxMessage
from app.outbox.reconcile import reclaim_stale, reconcile_unknown
from app.outbox.review import resolve_review
from tests.builders import make_case, make_customer, make_message, make_transaction

DEAD_WORKER = "dead-host:1:abc"


def left_for_review(channel: str = "email", **overrides) -> OutboxMessage:  # type: ignore[no-untyped-def]
    """A message a worker died on, taken to ``review`` by the dispatcher's own housekeeping: an email past its
    checkpoint (``reclaim_stale``), or an SMS/WhatsApp unknown nobody could settle in time
    (``reconcile_unknown``)."""
    customer = make_customer(first_name="Lucía", email=overrides.pop("email", "lucia@example.com"),
                             phone_e164="+13055550160")
    case = make_case(transaction=make_transaction(customer=customer, amount_minor=24900))
    address = customer.email if channel == "email" else customer.phone_e164
    started = datetime.now(UTC) - timedelta(hours=2)
    message = make_message(case=case, channel=channel, address=address, claimed_by=DEAD_WORKER,
                           claimed_at=started, attempts=1,
                           state="delivering" if channel == "email" else "unknown", **overrides)
    db.session.add(MessageEvent(message_id=message.id, kind="attempt", occurred_at=started, provider_payload={
        "channel": channel, "to": address, "n": 1, "started_at": started.isoformat(), "by": DEAD_WORKER}))
    db.session.commit()
    if channel == "email":
        assert reclaim_stale() == 1
    else:
        reconcile_unknown()
    db.session.expire_all()
    assert db.session.get(OutboxMessage, message.id).state == "review"
    return message


def kinds(message_id: int) -> list[str]:
    return list(db.session.scalars(sa.select(MessageEvent.kind).where(MessageEvent.message_id == message_id)
                                   .order_by(MessageEvent.id)))


def decisions(message_id: int) -> list[AuditEntry]:
    return list(db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "message.review_resolved",
                                                               AuditEntry.target_id == str(message_id))))


def test_the_queue_lists_what_a_person_must_decide_and_why(app, client, auth):
    app.config["UNKNOWN_REVIEW_HOURS"] = 1
    email = left_for_review("email")
    whatsapp = left_for_review("whatsapp", email="other@example.com")
    settled = make_message(state="sent", address="settled@example.com")
    db.session.commit()
    auth.login("operator")
    page = client.get("/admin/review/").get_data(as_text=True)
    assert f'id="review-{email.id}"' in page and f'id="review-{whatsapp.id}"' in page
    assert f'id="review-{settled.id}"' not in page and "settled@example.com" not in page
    row = page[page.index(f'id="review-{email.id}"'):page.index(f'id="review-{whatsapp.id}"')]
    for expected in ("Lucía", "lucia@example.com", f"/admin/cases/timeline/{email.case_id}", "$249.00", "Email",
                     "attempt 1", "the worker stopped after the end of DATA went out",
                     f"/admin/review/{email.id}/delivered", f"/admin/review/{email.id}/resend"):
        assert expected in row, expected
    assert "the provider could not tell us in time" in page and "+13055550160" in page


@pytest.mark.parametrize(("button", "delivered", "state"), [("delivered", True, "sent"),
                                                            ("resend", False, "scheduled")])
def test_an_operator_settles_a_message_and_it_is_recorded(client, auth, button, delivered, state):
    message = left_for_review()
    me = auth.login("operator")
    response = client.post(f"/admin/review/{message.id}/{button}", follow_redirects=True)
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert ("marked as delivered" if delivered else "will be sent again") in text
    assert f'id="review-{message.id}"' not in text
    db.session.expire_all()
    row = db.session.get(OutboxMessage, message.id)
    assert row.state == state and row.claimed_by is None
    assert (row.sent_at is not None) is delivered
    assert kinds(message.id) == ["attempt", "review", "reviewed"]
    event = db.session.scalar(sa.select(MessageEvent).where(MessageEvent.message_id == message.id,
                                                            MessageEvent.kind == "reviewed"))
    assert event.provider_payload == {"delivered": delivered, "by": me}
    [entry] = decisions(message.id)
    assert entry.actor == me and entry.details["delivered"] is delivered and entry.details["case"] == message.case_id


def test_an_auditor_sees_the_queue_but_cannot_decide(client, auth):
    message = left_for_review()
    auth.login("auditor")
    page = client.get("/admin/review/").get_data(as_text=True)
    assert f'id="review-{message.id}"' in page and "/delivered" not in page and "/resend" not in page
    for button in ("delivered", "resend"):
        response = client.post(f"/admin/review/{message.id}/{button}")
        assert response.status_code == 403 and "Nothing was changed" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(OutboxMessage, message.id).state == "review"
    assert kinds(message.id) == ["attempt", "review"] and decisions(message.id) == []


def test_a_message_settled_twice_is_settled_once_and_the_second_person_is_told(client, auth):
    mine, theirs = left_for_review(), left_for_review(email="second@example.com")
    me = auth.login("operator")
    client.post(f"/admin/review/{mine.id}/delivered")
    again = client.post(f"/admin/review/{mine.id}/resend", follow_redirects=True)
    assert again.status_code == 200
    assert f"Message #{mine.id} was already settled by {me} (delivered); nothing was changed" in again.get_data(
        as_text=True)
    # someone else decided in another tab while this page was open
    assert resolve_review(theirs.id, delivered=False, actor="colleague@example.com")
    late = client.post(f"/admin/review/{theirs.id}/delivered", follow_redirects=True).get_data(as_text=True)
    assert f"Message #{theirs.id} was already settled by colleague@example.com (sent again)" in late
    gone = client.post("/admin/review/999999/delivered", follow_redirects=True)
    assert gone.status_code == 200 and "There is no message #999999" in gone.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(OutboxMessage, mine.id).state == "sent"
    assert db.session.get(OutboxMessage, theirs.id).state == "scheduled"
    assert kinds(mine.id).count("reviewed") == 1 and kinds(theirs.id).count("reviewed") == 1
    assert len(decisions(mine.id)) == 1 and decisions(theirs.id) == []


def test_the_decisions_need_the_page_csrf_token(app, client, auth):
    message = left_for_review()
    auth.login("operator")
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        assert client.post(f"/admin/review/{message.id}/delivered").status_code == 400
        db.session.expire_all()
        assert db.session.get(OutboxMessage, message.id).state == "review"
        page = client.get("/admin/review/").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        assert client.post(f"/admin/review/{message.id}/delivered", data={"csrf_token": token}).status_code == 302
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    db.session.expire_all()
    assert db.session.get(OutboxMessage, message.id).state == "sent"
