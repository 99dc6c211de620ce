"""The least a stored webhook can cost on Recoup's stack: the baseline of ``bench/webhooks.py``.

A WSGI app with no Flask, served by the same gunicorn (gthread, the same workers and threads) as Recoup is. For every
POST it reads the body and stores it as an inbox row (``inbound_events``) with the inbox's own INSERT, through a group
writer (app.group_commit), and answers once that has committed. It checks no signature, parses nothing, logs nothing
and counts nothing. No webhook endpoint can be cheaper while it keeps the inbox's promise, which is that an answer means
stored. Its rate against ``/healthz`` is the stack's ceiling for the bench's ratio.

Run by the bench as ``gunicorn --config python:bench.bare_intake bench.bare_intake:app``; this module is also the
config: it holds gunicorn's settings, from the environment the bench gives it.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from app.group_commit import GroupWriter
from app.inbox import WRITE_BATCH, WRITE_TIMEOUT_SECONDS, _write
from app.models.types import utcnow
from app.writes import one_round_trip_engine

EVENT_TYPE = "bare"  # the rows it stores, counted by the bench (and never applied: stored as processed)

# gunicorn's settings (this module is its config too)
worker_class = "gthread"
workers = int(os.environ.get("RECOUP_WEB_WORKERS") or 2 * (os.cpu_count() or 1))
threads = int(os.environ.get("RECOUP_WEB_THREADS") or 8)
keepalive = 5

_writer: GroupWriter[dict[str, Any], tuple[int, bool]] | None = None
_guard = threading.Lock()


def post_worker_init(worker: Any) -> None:
    """As Recoup's web processes do (gunicorn.conf.py): the collector settled, the writer and its connection ready."""
    from app.ops.runtime import settle_garbage_collector

    with writer().engine.connect():
        pass
    settle_garbage_collector()


def writer() -> GroupWriter[dict[str, Any], tuple[int, bool]]:
    """This process's writer, on kept autocommit connections as the inbox's (app.writes.autocommit_engine)."""
    global _writer
    with _guard:
        if _writer is None or _writer.pid != os.getpid():
            engine = one_round_trip_engine(os.environ["DATABASE_URL"])
            _writer = GroupWriter("bare", engine, _write, batch=WRITE_BATCH, timeout=WRITE_TIMEOUT_SECONDS)
        return _writer


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["REQUEST_METHOD"] != "POST":
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else environ["wsgi.input"].read()
    provider = environ["PATH_INFO"].removeprefix("/hooks/").split("/", 1)[0]
    now = utcnow()
    row = {"provider": provider, "event_id": f"{EVENT_TYPE}:{uuid.uuid4().hex}", "event_type": EVENT_TYPE,
           "payload": {"body": body.decode("utf-8", "replace")}, "account_id": None, "received_at": now,
           "attempts": 0, "processed_at": now, "error": None}
    written, _ = writer().submit(row)
    if not written:
        start_response("503 Service Unavailable", [("Content-Length", "0")])
        return [b""]
    start_response("200 OK", [("Content-Length", "0")])
    return [b""]
