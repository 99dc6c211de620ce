"""The job queues, for admins only and read-only: each RQ queue's waiting, running, failed (with the exception)
and scheduled jobs (app.ops.queues). On the embedded default there is no queue to look at: jobs run in-process at
once, and the page says so."""

from __future__ import annotations

from typing import Any

from flask_admin import Admin, BaseView, expose

from admin.i18n import _l
from admin.security import RoleGuard
from app.queue import QUEUE_NAMES, get_queue


class QueueView(RoleGuard, BaseView):
    read_roles = ("admin",)
    write_roles = ("admin",)

    @expose("/")
    def index(self) -> Any:
        from app.ops.queues import LIST_LIMIT, overview

        queue = get_queue()
        error = None
        queues = []
        if queue.kind == "rq":
            try:
                queues = overview(queue.connection, QUEUE_NAMES)  # type: ignore[attr-defined]
            except Exception as exc:  # Redis away: the page says so instead of a 500
                error = type(exc).__name__
        return self.render("admin/ops/queues.html", kind=queue.kind, queues=queues, error=error, limit=LIST_LIMIT)


def register(admin: Admin) -> None:
    admin.add_view(QueueView(name=_l("Job queues"), category=_l("Operations"), endpoint="queues",
                             url="/admin/queues"))
