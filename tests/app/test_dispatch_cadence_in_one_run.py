"""A cadence cap holds inside one dispatch run: several steps of a customer that all fell due while the workers
were stopped (or while the demo clock was moved past them) go out one at a time, as the cap allows, not together.

Seen in the demo (issue 13): three steps of one case went out in the same run after the clock was moved.
"""

from __future__ import annotations

from datetime import timedelta

from app.models import OutboxMessage
from app.outbox.run import dispatch_due
from app.recovery.policies import activate_text
from tests.app.test_dispatch import NOW, due_message
from tests.builders import make_case, make_customer, make_transaction

CAPPED = """policy "capped"
  segment everyone when transaction.amount >= 0 USD
  cadence max 1 per day
  plan for everyone
    step after 0m via email template "payment_failed"
    step after 1d via email template "payment_failed"
    step after 2d via email template "payment_failed"
    give up after 14d
  end
end
"""
NEW_YORK = {"region": "NY", "postal_code": "10001", "phone_e164": "+12125550100"}  # 10:00 there at NOW


def test_steps_due_together_go_out_one_per_cap(db, channels):
    version = activate_text("capped", CAPPED, actor=None, note="test set-up").id
    case = make_case(transaction=make_transaction(customer=make_customer(**NEW_YORK)))
    ids = [due_message(case=case, scheduled_for=NOW - timedelta(hours=h), policy_version_id=version).id
           for h in (3, 2, 1)]
    db.session.commit()

    report = dispatch_due(now=NOW)

    assert report.get("sent") == 1, report
    states = [db.session.get(OutboxMessage, mid).state for mid in ids]
    assert states == ["sent", "scheduled", "scheduled"], states
    later = [db.session.get(OutboxMessage, mid).scheduled_for for mid in ids[1:]]
    assert all(at is not None and at.replace(tzinfo=None) >= (NOW + timedelta(hours=23)).replace(tzinfo=None)
               for at in later), later
    assert dispatch_due(now=NOW + timedelta(minutes=5)).get("sent", 0) == 0


def test_a_second_case_of_the_same_customer_counts_against_the_cap(db, channels):
    version = activate_text("capped", CAPPED, actor=None, note="test set-up").id
    customer = make_customer(**NEW_YORK)
    first = make_case(transaction=make_transaction(customer=customer))
    second = make_case(transaction=make_transaction(customer=customer))
    ids = [due_message(case=c, policy_version_id=version).id for c in (first, second)]
    db.session.commit()

    dispatch_due(now=NOW)

    states = sorted(db.session.get(OutboxMessage, mid).state for mid in ids)
    assert states.count("sent") == 1, states
