"""The same jobs run in-process on the embedded default and through real RQ on Redis."""

from datetime import timedelta

import pytest
from rq import SimpleWorker
from rq.registry import ScheduledJobRegistry

from app.extensions import db
from app.models import Setting
from app.queue import QUEUE_NAMES, InProcessQueue, RQQueue, make_queue
from workers.context import set_worker_app
from workers.schedule import periodic_jobs, schedule_next, slot_job_id


@pytest.fixture
def queue(app, queue_backend, redis_url):
    app.config["REDIS_URL"] = redis_url
    q = make_queue(app)
    app.extensions["recoup.queue"] = q
    set_worker_app(app)
    yield q
    set_worker_app(None)


def drain(queue):
    if isinstance(queue, RQQueue):
        worker = SimpleWorker(queue.ordered_queues(), connection=queue.connection)
        worker.work(burst=True)


def test_a_job_runs_and_its_work_is_committed(queue):
    queue.enqueue("tests.workers.sample_jobs.write_setting", "greeting", "hola", queue="low")
    drain(queue)
    db.session.expire_all()
    assert db.session.get(Setting, "greeting").value == "hola"


def test_a_job_passed_as_its_function_runs_the_same(queue):
    from tests.workers import sample_jobs

    queue.enqueue(sample_jobs.write_setting, "greeting", "by import", queue="low")
    drain(queue)
    db.session.expire_all()
    assert db.session.get(Setting, "greeting").value == "by import"


def test_unknown_queue_names_are_refused(queue):
    with pytest.raises(ValueError, match="unknown queue"):
        queue.enqueue("tests.workers.sample_jobs.write_setting", "k", "v", queue="whenever")


def test_urgent_work_is_taken_before_a_low_backlog(queue):
    if not isinstance(queue, RQQueue):
        pytest.skip("in-process jobs run at once, so there is never a backlog")
    for n in range(5):
        queue.enqueue("tests.workers.sample_jobs.write_setting", "last", f"low-{n}", queue="low")
    queue.enqueue("tests.workers.sample_jobs.write_setting", "first", "urgent", queue="urgent")
    order = []
    worker = SimpleWorker(queue.ordered_queues(), connection=queue.connection)
    worker.push_exc_handler(lambda *a: False)
    while worker.work(burst=True, max_jobs=1):
        order.append(worker.last_job_id if hasattr(worker, "last_job_id") else None)
        db.session.expire_all()
        if db.session.get(Setting, "first") is not None:
            break
    db.session.expire_all()
    assert db.session.get(Setting, "first").value == "urgent"
    assert db.session.get(Setting, "last") is None, "a low job ran before the urgent one"


def test_periodic_runs_are_scheduled_once_per_slot(queue, app):
    if not isinstance(queue, RQQueue):
        pytest.skip("RQ's scheduler is a Redis feature")
    job = periodic_jobs(app.config)[0]
    now = 1_800_000_000.0
    first = schedule_next(queue, job, now=now)
    second = schedule_next(queue, job, now=now + 1)  # another worker, a moment later
    assert first == second
    registry = ScheduledJobRegistry(job.queue, connection=queue.connection)
    assert registry.get_job_ids() == [first]


def test_slot_ids_move_with_time():
    from app.queue import PeriodicJob

    job = PeriodicJob("fetch", "workers.jobs.fetch_all", timedelta(minutes=5))
    a, delay = slot_job_id(job, now=1000.0)
    b, _ = slot_job_id(job, now=1300.5)
    assert a == "periodic-fetch-1200" and delay == timedelta(seconds=200)
    assert b == "periodic-fetch-1500"


def test_the_four_queues():
    assert QUEUE_NAMES == ("urgent", "high", "default", "low")
    assert InProcessQueue.kind == "in-process"


def test_a_redis_restart_loses_the_periodic_chains_and_a_worker_schedules_them_again(queue, app):
    """The machine's Redis keeps nothing on disk: a restart empties it, and with it every chain's next run. A
    running worker's maintenance schedules them again (before, dispatch and fetch stopped until a worker restart)."""
    if not isinstance(queue, RQQueue):
        pytest.skip("RQ's scheduler is a Redis feature")
    from workers.schedule import chain_keeping

    chains = periodic_jobs(app.config)
    worker = chain_keeping(SimpleWorker, queue, chains)(queue.ordered_queues(), connection=queue.connection,
                                                         maintenance_interval=30)
    queue.connection.flushdb()  # what a restart leaves
    assert not any(ScheduledJobRegistry(j.queue, connection=queue.connection).get_job_ids() for j in chains)
    def runs(job):  # type: ignore[no-untyped-def]  # a queue may carry several chains (analytics, experiments)
        ids = ScheduledJobRegistry(job.queue, connection=queue.connection).get_job_ids()
        return [i for i in ids if i.startswith(f"periodic-{job.name}-")]

    worker.run_maintenance_tasks()
    for job in chains:
        assert len(runs(job)) == 1, job.name
    worker.run_maintenance_tasks()  # again: the same runs, not a second chain
    assert [len(runs(j)) for j in chains] == [1] * len(chains)
