"""`flask worker` settles its garbage collector before its first job (app.ops.runtime): a job runs with what the
worker loaded frozen and the young generation's threshold raised, through the real CLI and RQ on Redis."""

from __future__ import annotations

import json
import os

import pytest

from tests import backends


@pytest.mark.redis
def test_a_job_runs_in_a_worker_whose_collector_is_settled(app, db, backend, pytestconfig):
    if backend != "mysql":
        pytest.skip("the worker runs on MariaDB + Redis")
    if not pytestconfig._recoup_redis:
        pytest.skip("Redis not available")
    from redis import Redis

    from app.ops.runtime import GC_THRESHOLDS
    from app.queue import RQQueue
    from tests.crash import run_worker_burst
    from tests.workers.gc_probe import report

    redis = Redis.from_url(backends.REDIS_URL)
    redis.flushdb()
    RQQueue(backends.REDIS_URL).enqueue(report, backends.REDIS_URL, "recoup-test:gc", queue="low")
    env = {**os.environ, "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"], "REDIS_URL": backends.REDIS_URL,
           "SECRET_KEY": app.config["SECRET_KEY"]}
    done = run_worker_burst(env)
    seen = redis.get("recoup-test:gc")
    assert seen is not None, f"the job did not run: {done.stderr[-3000:]}"
    found = json.loads(seen)
    assert tuple(found["thresholds"]) == GC_THRESHOLDS
    assert found["frozen"] > 10_000, found
