"""Operations: the case timeline, the escalation queue, customers' VIP flag and tags, filters."""

from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry, Customer, EscalationTask


def test_case_timeline_tells_the_whole_story(client, auth, world):
    auth.login("operator")
    page = client.get(f"/admin/cases/timeline/{world.case.id}").get_data(as_text=True)
    for expected in ("Planned with policy “standard” version 1", "policy line", "delivered",
                     "Payment page opened (2 times)", "Payment declined", "Insufficient funds", "SMS"):
        assert expected in page, expected
    assert 'class="k-payment s-declined"' in page  # drawn red, not like an approved payment
    assert client.get("/admin/cases/timeline/999999", follow_redirects=True).status_code == 200


def test_cases_filter_by_state_segment_priority_and_gateway(client, auth, world):
    auth.login("operator")
    page = client.get("/admin/cases/").get_data(as_text=True)
    for name in ("State", "Segment", "Priority", "Gateway"):
        assert f'"{name}"' in page or f">{name}<" in page, name
    assert client.get("/admin/cases/?flt0_0=nmi").status_code == 200


def test_escalation_queue_assign_note_resolve(client, auth, world):
    email = auth.login("operator")
    task_id = world.escalation.id
    assert f'id="escalation-{task_id}"' in client.get("/admin/escalations/").get_data(as_text=True)
    me = db.session.scalar(sa.text("SELECT id FROM users WHERE email = :e"), {"e": email})
    client.post(f"/admin/escalations/{task_id}/assign", data={"user_id": str(me)})
    client.post(f"/admin/escalations/{task_id}/note", data={"note": "called the customer"})
    client.post(f"/admin/escalations/{task_id}/resolve", data={"note": "paid by phone"})
    db.session.expire_all()
    task = db.session.get(EscalationTask, task_id)
    assert task.state == "resolved" and task.assigned_to_id == me
    assert "called the customer" in task.note and "paid by phone" in task.note
    actions = set(db.session.scalars(sa.select(AuditEntry.action)))
    assert {"escalation.assign", "escalation.note", "escalation.resolve"} <= actions
    assert f'id="escalation-{task_id}"' not in client.get("/admin/escalations/").get_data(as_text=True)


def test_operators_edit_vip_and_tags(client, auth, world):
    auth.login("operator")
    response = client.post(f"/admin/customers/edit/?id={world.customer_id}",
                           data={"vip": "", "tags": "Wholesale, partner ,", "timezone_explicit": "Europe/Madrid",
                                 "locale": "es_ES"})
    assert response.status_code == 302
    db.session.expire_all()
    customer = db.session.get(Customer, world.customer_id)
    assert customer.vip is False and customer.tags == ["partner", "wholesale"]
    assert customer.timezone_explicit == "Europe/Madrid"
    bad = client.post(f"/admin/customers/edit/?id={world.customer_id}",
                      data={"vip": "y", "tags": "", "timezone_explicit": "Mars/Olympus", "locale": ""})
    assert "is not a time zone" in bad.get_data(as_text=True)
    listing = client.get("/admin/customers/").get_data(as_text=True)
    assert "partner, wholesale" in listing and "sms_stop" in listing  # opt-outs with their source


# -- cases: search, actions, deferrals in words (issue 13) -----------------------------------------------------------
def _case_ids_listed(client, query: str) -> set[int]:  # type: ignore[no-untyped-def]
    import re

    page = client.get("/admin/cases/", query_string={"search": query}).get_data(as_text=True)
    return {int(n) for n in re.findall(r'/admin/cases/timeline/(\d+)"', page)}


def test_cases_are_found_by_email_phone_name_order_and_transaction_id(client, auth, world):
    from app.models import Transaction

    auth.login("operator")
    case = world.case
    customer = db.session.get(Customer, case.customer_id)
    tx = db.session.get(Transaction, case.transaction_id)
    tx.order_id = "SHOP-ORDER-7781"
    db.session.commit()
    others = {c.id for c in world.cases} - {case.id}
    for query in (customer.email, customer.email.upper(), "SHOP-ORDER-7781", tx.gateway_transaction_id,
                  f"{customer.first_name} {customer.last_name}"):
        found = _case_ids_listed(client, query)
        assert case.id in found and not (found & others), query
    assert _case_ids_listed(client, "nobody@nowhere.example") == set()
    assert "Name, email, phone, order or transaction id" in client.get("/admin/cases/").get_data(as_text=True)


def test_a_deferral_names_its_reasons_and_policy_lines_in_words(client, auth, world):
    from datetime import UTC, datetime

    from app.models import MessageEvent, OutboxMessage
    from app.outbox.check import Deferral

    auth.login("auditor")
    message = db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.case_id == world.case.id)).first()
    deferral = Deferral(datetime(2026, 12, 7, 14, 0, tzinfo=UTC), ("business_hours", "legal_window"),
                        ({"reason": "business_hours", "source": "policy", "line": 9},
                         {"reason": "legal_window", "source": "law", "detail": "47 CFR 64.1200(c)(1)"}))
    db.session.add(MessageEvent(message_id=message.id, kind="deferred",
                                provider_payload=deferral.event("email", {"ignores": ["weekends"], "lines": [14]})))
    db.session.commit()
    page = client.get(f"/admin/cases/timeline/{world.case.id}").get_data(as_text=True)
    for expected in ("deferred until", "Outside business hours", "policy line 9", "Legal contact window",
                     "47 CFR 64.1200(c)(1)", "urgent override, policy line 14"):
        assert expected in page, expected


def test_operators_act_on_a_case_and_each_action_is_audited(client, auth, world):
    from app.models import OutboxMessage, RecoveryCase

    email = auth.login("operator")
    case_id = world.case.id
    page = client.get(f"/admin/cases/timeline/{case_id}").get_data(as_text=True)
    for button in ('id="send-now"', 'id="pause"', 'id="make-link"', 'id="paid-elsewhere"', 'id="cancel-case"'):
        assert button in page, button
    assert 'id="resume"' not in page

    response = client.post(f"/admin/cases/{case_id}/send-now", follow_redirects=True)
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "goes now" in text or "the earliest moment allowed" in text

    text = client.post(f"/admin/cases/{case_id}/payment-link", follow_redirects=True).get_data(as_text=True)
    assert 'id="payment-link"' in text and "http://localhost/p" in text

    text = client.post(f"/admin/cases/{case_id}/pause", data={"reason": "customer on holiday"},
                       follow_redirects=True).get_data(as_text=True)
    assert "Paused:" in text and 'id="resume"' in text and 'id="case-paused"' in text
    assert "already paused" in client.post(f"/admin/cases/{case_id}/pause",
                                           follow_redirects=True).get_data(as_text=True)
    assert "Resumed" in client.post(f"/admin/cases/{case_id}/resume", follow_redirects=True).get_data(as_text=True)

    bad = client.post(f"/admin/cases/{case_id}/paid-elsewhere", data={"amount": "lots"}, follow_redirects=True)
    assert "is not an amount" in bad.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(RecoveryCase, case_id).state != "recovered"
    due = db.session.get(RecoveryCase, case_id)
    amount = f"{due.amount_due_minor / 100:.2f}"
    text = client.post(f"/admin/cases/{case_id}/paid-elsewhere", data={"amount": amount, "note": "cash in store"},
                       follow_redirects=True).get_data(as_text=True)
    assert "Marked as paid elsewhere" in text and 'id="case-actions"' not in text
    db.session.expire_all()
    closed = db.session.get(RecoveryCase, case_id)
    assert closed.state == "recovered" and closed.recovered_via == "elsewhere"
    assert not db.session.scalars(sa.select(OutboxMessage).where(
        OutboxMessage.case_id == case_id, OutboxMessage.state.in_(("scheduled", "paused", "held")))).all()
    again = client.post(f"/admin/cases/{case_id}/paid-elsewhere", data={"amount": amount}, follow_redirects=True)
    assert "is closed" in again.get_data(as_text=True)
    actions = [a for a, who in db.session.execute(sa.select(AuditEntry.action, AuditEntry.actor))
               if who == email and a.startswith("case.")]
    assert sorted(actions) == sorted(["case.send_now", "case.payment_link", "case.pause", "case.resume",
                                      "case.paid_elsewhere"])
    story = client.get(f"/admin/cases/timeline/{case_id}").get_data(as_text=True)
    assert "Marked as paid elsewhere" in story and "cash in store" in story


def test_cancel_closes_the_case(client, auth, world):
    from app.models import RecoveryCase

    auth.login("admin")
    case_id = world.cases[-1].id
    text = client.post(f"/admin/cases/{case_id}/cancel", data={"reason": "duplicate"},
                       follow_redirects=True).get_data(as_text=True)
    assert "Case cancelled" in text
    db.session.expire_all()
    assert db.session.get(RecoveryCase, case_id).state == "cancelled"


def test_auditors_and_authors_cannot_act_on_cases(client, auth, world):
    from app.models import RecoveryCase

    case_id = world.case.id
    for role in ("auditor", "author", "approver"):
        auth.login(role)
        page = client.get(f"/admin/cases/timeline/{case_id}").get_data(as_text=True)
        assert 'id="case-actions"' not in page, role
        for action in ("send-now", "pause", "resume", "payment-link", "paid-elsewhere", "cancel"):
            response = client.post(f"/admin/cases/{case_id}/{action}", data={"amount": "1.00"})
            assert response.status_code == 403, (role, action)
        auth.logout()
    db.session.expire_all()
    assert db.session.get(RecoveryCase, case_id).paused_at is None
    assert not [a for a in db.session.scalars(sa.select(AuditEntry.action)) if a.startswith("case.")]
