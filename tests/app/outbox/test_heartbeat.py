"""The heartbeat renews the leases of the rows a run holds, and only those: still claimed by this run and on their
way. It renews them by primary key, one row per statement (an ``IN`` list with a state filter let MariaDB lock the
state index before the rows and deadlock with a send's own update)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from app.models import OutboxMessage
from app.outbox.claim import Heartbeat
from app.outbox.states import OutboxState as S
from tests.builders import make_message

OLD = datetime(2026, 1, 1, tzinfo=UTC)


def claimed_at(db, mid):  # type: ignore[no-untyped-def]
    db.session.rollback()  # a new snapshot (MariaDB reads repeatably inside one transaction)
    return db.session.scalar(sa.select(OutboxMessage.claimed_at).where(OutboxMessage.id == mid))


def test_held_rows_in_flight_are_renewed_and_no_other(app, db):
    app.config["DISPATCH_LEASE_SECONDS"] = 1  # a beat every quarter of a second
    rows = {
        "claimed": make_message(state=S.CLAIMED, claimed_by="run-a", claimed_at=OLD),
        "sending": make_message(state=S.SENDING, claimed_by="run-a", claimed_at=OLD),
        "released": make_message(state=S.SENDING, claimed_by="run-a", claimed_at=OLD),
        "another run's": make_message(state=S.SENDING, claimed_by="run-b", claimed_at=OLD),
        "sent": make_message(state=S.SENT, claimed_by="run-a", claimed_at=OLD),
    }
    db.session.commit()
    ids = {name: row.id for name, row in rows.items()}
    db.session.remove()
    started = datetime.now(UTC) - timedelta(seconds=1)
    with Heartbeat(app, "run-a") as heartbeat:
        heartbeat.hold(list(ids.values()))
        heartbeat.release(ids["released"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and claimed_at(db, ids["sending"]) == OLD:
            time.sleep(0.1)
    renewed = {name for name, mid in ids.items() if claimed_at(db, mid) != OLD}
    assert renewed == {"claimed", "sending"}
    assert claimed_at(db, ids["sending"]) >= started
