"""/healthz and /readyz over HTTP: what each check found, 503 naming what is down (a wrong port in the app's
configuration, never a stopped shared server), and the queue lag against its bound."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests import backends
from tests.builders import make_message


@pytest.fixture
def redis_db(pytestconfig):
    if not pytestconfig._recoup_redis:
        pytest.skip("Redis not available")
    from redis import Redis

    conn = Redis.from_url(backends.REDIS_URL)
    conn.flushdb()
    yield backends.REDIS_URL
    conn.flushdb()
    conn.close()


def test_healthz_answers_without_the_database(client, app):
    app.config["SQLALCHEMY_DATABASE_URI"] = "never used"
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.json == {"status": "ok"}
    assert answer.headers["X-Request-ID"]


def test_readyz_on_the_embedded_queue_says_redis_is_not_used_and_passes(client, app, backend):
    answer = client.get("/readyz")
    assert answer.status_code == 200, answer.json
    body = answer.json
    assert body["status"] == "ready" and body["failing"] == []
    assert body["checks"]["database"] == {"status": "ok", "detail": backend}
    assert body["checks"]["redis"]["status"] == "skipped" and "in-process" in body["checks"]["redis"]["detail"]
    assert body["checks"]["queue_lag"]["status"] == "ok"
    assert body["checks"]["queue_lag"]["outbox_oldest_due_seconds"] is None


def test_readyz_with_redis_reachable_and_unreachable(client, app, redis_db):
    app.config["REDIS_URL"] = redis_db
    answer = client.get("/readyz")
    assert answer.status_code == 200, answer.json
    assert answer.json["checks"]["redis"] == {"status": "ok"}
    assert answer.json["checks"]["queue_lag"]["rq_oldest_waiting_seconds"] == {
        "urgent": None, "high": None, "default": None, "low": None}

    app.config["REDIS_URL"] = "redis://127.0.0.1:1/6"  # nothing listens there
    down = client.get("/readyz")
    assert down.status_code == 503
    assert down.json["status"] == "not ready" and down.json["failing"] == ["redis"]
    assert "Redis unreachable" in down.json["checks"]["redis"]["detail"]
    assert down.json["checks"]["database"]["status"] == "ok"


def test_readyz_fails_naming_the_database_when_mariadb_is_unreachable(tmp_path):
    from app import create_app
    from config import TestingConfig

    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI="mysql+pymysql://recoup:x@127.0.0.1:1/recoup")
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 503
    body = answer.json
    assert body["failing"] == ["database"]
    assert body["checks"]["database"]["status"] == "fail"
    assert "database unreachable" in body["checks"]["database"]["detail"]
    assert "recoup:x" not in answer.get_data(as_text=True)  # no credentials, no URL
    assert body["checks"]["queue_lag"]["status"] == "skipped"
    assert app.test_client().get("/healthz").status_code == 200  # the process itself is fine


def test_readyz_fails_when_the_oldest_due_message_has_waited_too_long(client, app, db):
    app.config["READY_MAX_LAG_SECONDS"] = 600
    make_message(scheduled_for=datetime.now(UTC) - timedelta(minutes=5))
    make_message(scheduled_for=datetime.now(UTC) + timedelta(hours=3))  # not due: no lag
    db.session.commit()
    fine = client.get("/readyz")
    assert fine.status_code == 200, fine.json
    assert 290 <= fine.json["checks"]["queue_lag"]["outbox_oldest_due_seconds"] <= 400

    make_message(scheduled_for=datetime.now(UTC) - timedelta(minutes=30))
    make_message(scheduled_for=datetime.now(UTC) - timedelta(hours=2), state="sent")  # settled: not waiting
    db.session.commit()
    late = client.get("/readyz")
    assert late.status_code == 503
    assert late.json["failing"] == ["queue_lag"]
    lag = late.json["checks"]["queue_lag"]
    assert 1790 <= lag["outbox_oldest_due_seconds"] <= 1900
    assert "oldest due outbox message" in lag["detail"]


def test_readyz_fails_when_a_job_waits_in_an_rq_queue(client, app, redis_db):
    from redis import Redis
    from rq import Queue

    app.config.update(REDIS_URL=redis_db, READY_MAX_LAG_SECONDS=1)
    Queue("low", connection=Redis.from_url(redis_db)).enqueue("workers.jobs.fetch_all")  # no worker takes it
    time.sleep(1.5)
    answer = client.get("/readyz")
    assert answer.status_code == 503
    lag = answer.json["checks"]["queue_lag"]
    assert lag["rq_oldest_waiting_seconds"]["low"] >= 1.5 and lag["rq_oldest_waiting_seconds"]["urgent"] is None
    assert "RQ queue 'low'" in lag["detail"]
