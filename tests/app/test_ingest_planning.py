"""New cases go to planning as a job referenced by import (a renamed job fails at import, not in a worker)."""

import pathlib
import re

import sqlalchemy as sa

from app.ingest.transactions import hand_to_planning
from workers import jobs


class RecordingQueue:
    kind = "recording"

    def __init__(self):
        self.calls = []

    def enqueue(self, func, *args, queue="default", job_id=None, retries=(), **kw):
        self.calls.append((func, args, queue))
        self.retries = retries


def test_new_cases_are_planned_by_the_job_function_in_batches_on_the_high_queue(app):
    queue = RecordingQueue()
    app.extensions["recoup.queue"] = queue
    hand_to_planning(list(range(1, 451)))
    assert [func for func, _, _ in queue.calls] == [jobs.plan_cases] * 3
    assert {q for _, _, q in queue.calls} == {"high"}
    assert queue.retries == (5, 30, 120)  # a database restarting under the job is not the end of it
    assert [args[0] for _, args, _ in queue.calls] == [
        list(range(1, 201)), list(range(201, 401)), list(range(401, 451))
    ]


def test_no_app_module_names_a_job_by_its_import_path():
    root = pathlib.Path(__file__).resolve().parents[2] / "app"
    named = re.compile(r"""["']workers\.[a-z_.]+["']""")
    found = [
        f"{path.relative_to(root.parent)}:{n}"
        for path in sorted(root.rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if named.search(line)
    ]
    assert found == []


STRAGGLER_POLICY = """policy "stragglers"
  segment everyone when transaction.amount >= 0 USD
  plan for everyone
    step after 0m via email template "payment_failed"
  end
end
"""


def test_a_case_whose_planning_job_was_lost_is_planned_by_the_next_dispatch_run(app, db):
    """A Redis restart drops queued jobs, and a worker can die between the commit and the enqueue: a case still
    unplanned a minute after it opened is planned by the periodic dispatch job (never one opened just now: its job
    may be on its way)."""
    from datetime import UTC, datetime, timedelta

    from app.models import OutboxMessage, RecoveryCase
    from app.recovery.policies import activate_text
    from tests.builders import make_case
    from workers.context import set_worker_app

    activate_text("stragglers", STRAGGLER_POLICY, actor=None, note="test")
    lost = make_case(opened_at=datetime.now(UTC) - timedelta(minutes=3))
    fresh = make_case(opened_at=datetime.now(UTC) - timedelta(seconds=5))
    closed = make_case(opened_at=datetime.now(UTC) - timedelta(minutes=3), state="recovered")
    ids = (lost.id, fresh.id, closed.id)
    db.session.commit()
    set_worker_app(app)
    try:
        report = jobs.dispatch_due()
    finally:
        set_worker_app(None)
    db.session.expire_all()
    lost, fresh, closed = (db.session.get(RecoveryCase, i) for i in ids)
    assert report["planned_late"] == 1
    assert lost.plan is not None and fresh.plan is None and closed.plan is None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)
                             .where(OutboxMessage.case_id == lost.id)) == 1
