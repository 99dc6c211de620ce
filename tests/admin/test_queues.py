"""Operations > Job queues: admins see each RQ queue's waiting, failed (with the exception) and scheduled jobs; every
other role gets 403; nothing on the page changes a job; the embedded in-process queue is said to be so."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.queue import RQQueue, check_queue_name
from tests import backends
from workers import jobs


@pytest.fixture
def rq_queue(app, pytestconfig):
    if not pytestconfig._recoup_redis:
        pytest.skip("Redis not available")
    queue = RQQueue(backends.REDIS_URL)
    queue.connection.flushdb()
    before = app.extensions["recoup.queue"]
    app.extensions["recoup.queue"] = queue
    yield queue
    app.extensions["recoup.queue"] = before
    queue.connection.flushdb()
    queue.connection.close()


def test_an_admin_sees_waiting_failed_and_scheduled_jobs(app, client, auth, rq_queue):
    from rq import SimpleWorker

    failing = rq_queue.enqueue(check_queue_name, "no-such-queue", queue="high")
    SimpleWorker([rq_queue.queues["high"]], connection=rq_queue.connection).work(burst=True)  # a real run, failing
    waiting = rq_queue.enqueue(jobs.plan_cases, [41, 42], queue="low")
    later = rq_queue.enqueue_in(timedelta(hours=2), jobs.dispatch_due, queue="default")

    auth.login("admin")
    page = client.get("/admin/queues/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Job queues" in html
    assert f'id="failed-{failing.id}"' in html and "ValueError: unknown queue &#39;no-such-queue&#39;" in html
    assert f'id="waiting-{waiting.id}"' in html and "workers.jobs.plan_cases([41, 42])" in html
    assert f'id="scheduled-{later.id}"' in html and "workers.jobs.dispatch_due()" in html
    assert '<tr id="queue-high"><td>high</td><td>0</td><td>0</td><td>1</td><td>0</td></tr>' in html
    assert '<tr id="queue-low"><td>low</td><td>1</td><td>0</td><td>0</td><td>0</td></tr>' in html
    assert client.post("/admin/queues/").status_code == 405  # nothing to change here


@pytest.mark.parametrize("role", ["operator", "auditor", "author", "approver"])
def test_every_other_role_gets_403(app, client, auth, role):
    auth.login(role)
    answer = client.get("/admin/queues/")
    assert answer.status_code == 403


def test_signed_out_goes_to_sign_in(client, app):
    answer = client.get("/admin/queues/")
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]


def test_the_in_process_queue_is_said_to_be_so(app, client, auth):
    auth.login("admin")
    html = client.get("/admin/queues/").get_data(as_text=True)
    assert 'id="queues-in-process"' in html and "queue-counts" not in html


def test_redis_away_is_said_not_a_500(app, client, auth):
    before = app.extensions["recoup.queue"]
    app.extensions["recoup.queue"] = RQQueue("redis://127.0.0.1:1/6")
    try:
        auth.login("admin")
        answer = client.get("/admin/queues/")
    finally:
        app.extensions["recoup.queue"] = before
    assert answer.status_code == 200 and 'id="queues-error"' in answer.get_data(as_text=True)
