"""A run of the dispatcher goes on past a batch it could only defer: what is due behind it still goes out.

Seen in the demo (issue 13, "Done when" 2): the sample store's backlog, due at night for its customers, filled every
claim of a dispatch run; the run stopped after deferring the first batch, and the newcomer's reminder, due behind
it, waited for more runs while the business clock was moved past it (then three steps went out at once).
"""

from __future__ import annotations

from datetime import timedelta

from app.models import OutboxMessage
from app.outbox.run import dispatch_due
from app.recovery.policies import activate_text
from tests.app.test_dispatch import NOW, due_message
from tests.builders import make_case, make_customer, make_transaction

NIGHTS = """policy "nights"
  segment everyone when transaction.amount >= 0 USD
  quiet hours 21:00-08:00
  plan for everyone
    step after 0m via email template "payment_failed"
    give up after 14d
  end
end
"""
NEW_YORK = {"region": "NY", "postal_code": "10001", "phone_e164": "+12125550100"}
#: NOW is 07:00 in Los Angeles: inside the quiet hours, so these customers' messages wait for the morning
AT_NIGHT = {"region": "CA", "postal_code": "90012", "phone_e164": "+12135550100", "timezone": "America/Los_Angeles",
            "timezone_candidates": ["America/Los_Angeles"]}


def test_a_batch_that_is_all_deferred_does_not_end_the_run(db, channels):
    version = activate_text("nights", NIGHTS, actor=None, note="test set-up").id
    night = [make_case(transaction=make_transaction(customer=make_customer(**AT_NIGHT))) for _ in range(5)]
    waiting = [due_message(case=case, scheduled_for=NOW - timedelta(hours=1), policy_version_id=version).id
               for case in night]  # the oldest: claimed first
    awake = make_case(transaction=make_transaction(customer=make_customer(**NEW_YORK)))
    ready = due_message(case=awake, policy_version_id=version).id  # 10:00 in New York, due behind the backlog
    db.session.commit()

    report = dispatch_due(now=NOW, concurrency=2)  # claims two at a time: the first batches only defer

    assert report.get("deferred") == 5 and report.get("sent") == 1, report
    assert db.session.get(OutboxMessage, ready).state == "sent"
    assert {db.session.get(OutboxMessage, mid).state for mid in waiting} == {"scheduled"}
    assert channels.smtp.count(f"m{ready}") == 1
