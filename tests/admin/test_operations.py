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
