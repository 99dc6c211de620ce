"""RQ jobs. Each takes ids, opens its own app context, calls one service, and is safe to run twice."""

from __future__ import annotations

import logging
from typing import Any

from app.ops.metrics import timed_job
from workers.context import job_context

log = logging.getLogger(__name__)


@timed_job
def fetch_all() -> list[str]:
    """Periodic: one incremental fetch of every enabled gateway account."""
    with job_context():
        from app.ingest.transactions import fetch_accounts

        reports = fetch_accounts()
        for report in reports:
            (log.info if report.ok else log.error)("%s", report.summary())
        return [report.summary() for report in reports]


@timed_job
def fetch_account(account_id: int) -> str:
    with job_context():
        from app.ingest.transactions import fetch_account as fetch

        return fetch(account_id).summary()


@timed_job
def apply_webhooks() -> dict[str, int]:
    """Woken by a burst of webhooks: apply the stored ones that wait (app.inbox)."""
    with job_context():
        from app import inbox
        from app.queue import get_queue

        inbox.woken()
        return inbox.apply_waiting(settle=get_queue().kind == "rq")


@timed_job
def refresh_analytics() -> dict[str, int] | str:
    """Periodic: the analytics rollups catch up with the cases and messages that changed."""
    with job_context():
        from app.analytics.rollups import refresh_changed
        from app.locks import Busy

        try:
            return refresh_changed()
        except Busy:
            return "skipped: a rebuild or another refresh is running"


@timed_job
def check_experiments() -> dict[str, Any]:
    """Periodic: running experiments are read (exposures stamped) and an arm a guardrail condemns is stopped."""
    with job_context():
        from app.recovery.experiments import check_running

        return check_running()


@timed_job
def plan_cases(case_ids: list[int]) -> dict[str, Any]:
    """Plan new cases with the active policy; a case already planned is left alone."""
    with job_context():
        from app.recovery.planning import plan_cases as plan

        return plan(case_ids)


@timed_job
def send_message(message_id: int) -> str:
    """One outbox row sent now (a receipt), not at the next periodic run; a row already claimed is left alone."""
    with job_context() as app, app.app_context():  # a session of its own, also when a request enqueued it in-process
        from app.outbox.run import send_now

        return send_now(message_id)


@timed_job
def dispatch_due() -> dict[str, Any]:
    """Periodic: claim due outbox messages and send them."""
    with job_context():
        from app import inbox
        from app.outbox.run import dispatch_due as dispatch
        from app.payments.charges import run_due_payment_retries
        from app.recovery.planning import plan_stragglers

        late = plan_stragglers()  # cases whose planning job was lost; their first steps may be due right away
        swept = inbox.apply_waiting(older_than=inbox.SWEEP_AFTER, budget_seconds=5)  # webhooks whose wake-up was lost
        report = dispatch()
        if swept["applied"] or swept["failed"]:
            report["webhooks_swept"] = swept
        if late.get("planned"):
            report["planned_late"] = late["planned"]
        report["payments"] = run_due_payment_retries()
        return report
