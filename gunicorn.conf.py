"""gunicorn's settings for Recoup's web processes: ``gunicorn wsgi:app`` run from this folder reads them (any of them
can be overridden on the command line or in ``GUNICORN_CMD_ARGS``). docs/operations.md says why these.

Threads, not just processes: a request spends most of its time waiting (for MariaDB's commit, for Redis), and while it
waits a thread of the same process serves another. A webhook waits for its row's commit, and the process's inbox
writer commits every webhook its threads are waiting on in one transaction (app.inbox): the more threads, the fewer
commits.
"""

import os

wsgi_app = "wsgi:app"
bind = os.environ.get("RECOUP_WEB_BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = int(os.environ.get("RECOUP_WEB_WORKERS") or 2 * (os.cpu_count() or 1))
threads = int(os.environ.get("RECOUP_WEB_THREADS") or 8)
# providers hold a connection open between webhooks of a burst; a reverse proxy in front holds its own
keepalive = 5


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    """Before the process takes its first request: what its first webhooks would otherwise wait for."""
    from app.ops.runtime import settle_garbage_collector
    from app.web.hooks import prepare

    prepare(worker.wsgi)
    settle_garbage_collector()


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    """A worker's metrics files are merged by the others once it is gone (PROMETHEUS_MULTIPROC_DIR)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
