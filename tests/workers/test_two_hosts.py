"""Issue 16, point 2: two worker "hosts" (network namespaces, each behind a veth pair; tests/netns.py) dispatch due
messages against one MariaDB and one Redis. Mid-dispatch one host is cut off the network (its veth link down: its
connections hang, nothing is closed or reset) while it holds claimed rows. Its leases run out and the other host
reclaims those rows and finishes everything. Then the link comes back and the cut-off worker wakes up in the middle
of a batch it no longer owns: the outbox's claim tokens and state checks must keep it from sending any of it. The
simulators' counts per reference are the judge (tests/crash.py): every message received exactly once, except rows
held for a person (``review``: sent or maybe sent where the provider cannot be asked), received at most once.

A cut-off host's open transaction stays open on MariaDB (the server sees no FIN) and its row locks block the other
host until the server notices the host is gone: by TCP keepalive (MariaDB's tcp_keepalive_*, docs/operations.md),
which the forwarders stand in for (tests/netns.py); without it the other host's dispatch runs end in lock wait
timeouts until MariaDB's wait_timeout (8 hours by default) and this test fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import sqlalchemy as sa

from tests import backends
from tests.crash import SETTLED, descendants, judge, kill_worker, seed_round, start_worker, states, story, worker_env
from tests.netns import Hosts, netns_refused

N = int(os.environ.get("RECOUP_TWO_HOSTS_N", "1500"))
CONCURRENCY = 16
IN_FLIGHT = ("claimed", "sending", "delivering")
#: status webhooks: a provider saying it has the message (a request that left before the cut)
PROVIDER_REPORTS = ("delivered", "read", "undelivered")
REROUTED = ("DATABASE_URL", "REDIS_URL", "SMTP_URL", "TWILIO_API_URL", "WHATSAPP_API_URL")


def held_by(db, pids: list[int]) -> list[int]:  # type: ignore[no-untyped-def]
    """In-flight rows claimed by one of ``pids`` (a claim token is ``host:pid:nonce``)."""
    from app.models import OutboxMessage

    db.session.rollback()
    rows = db.session.execute(sa.select(OutboxMessage.id, OutboxMessage.claimed_by)
                              .where(OutboxMessage.state.in_(IN_FLIGHT))).all()
    wanted = {str(p) for p in pids}
    return sorted(i for i, token in rows if token and token.rsplit(":", 2)[-2] in wanted)


@pytest.mark.slow
@pytest.mark.redis
def test_a_host_cut_off_mid_dispatch_is_taken_over_and_every_message_arrives_once(
    app, db, backend, pytestconfig, tmp_path
):
    if backend != "mysql":
        pytest.skip("the two-host run is on MariaDB + Redis")
    if not pytestconfig._recoup_redis:
        pytest.skip("Redis not available")
    refused = netns_refused()
    if refused:
        if backends.IN_CI:
            pytest.fail(f"CI=true but network namespaces cannot be made here: {refused}")
        pytest.skip(refused)

    from redis import Redis

    from app.models import MessageEvent
    from app.queue import RQQueue
    from tests.live_server import LiveServer
    from tests.providers import ChannelSimulators
    from workers import jobs

    redis_url = backends.spare_redis_url("two-hosts")
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    ids, run = seed_round(db, n=N, concurrency=CONCURRENCY)
    sims = ChannelSimulators().start()
    workers: list[subprocess.Popen[bytes] | None] = [None, None]
    logs = [tmp_path / "host0.log", tmp_path / "host1.log"]
    stranded: list[int] = []
    cut_at = taken_over_in = 0.0
    try:
        with Hosts(2) as hosts, LiveServer(app) as live:
            sims.configure(app, public_url=live.url)
            sims.whatsapp.webhook_url = f"{live.url}/hooks/whatsapp"
            base = worker_env(app, redis_url, CONCURRENCY)
            envs = [{**base, **{key: host.reroute(base[key]) for key in REROUTED}} for host in hosts]
            for i, host in enumerate(hosts):
                workers[i] = start_worker(envs[i], logs[i], prefix=tuple(host.argv()))
            victim = hosts[0]
            queue = RQQueue(redis_url)
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline:
                if len(queue.queues["urgent"]) == 0:
                    queue.enqueue(jobs.dispatch_due, queue="urgent")
                now = states(db)
                done = sum(now[s] for s in SETTLED)
                if not cut_at and done >= N * 0.25:
                    horses = descendants(workers[0].pid)  # type: ignore[union-attr]
                    if horses and held_by(db, horses):
                        victim.cut()
                        cut_at = time.monotonic()
                        # what it holds once the statements it had already sent have landed, it can no longer
                        # give back: only the other host can finish it
                        time.sleep(1)
                        stranded = held_by(db, horses)
                        if not stranded:
                            victim.restore()
                            cut_at = 0.0
                        continue
                if cut_at and done == N:
                    taken_over_in = time.monotonic() - cut_at
                    break
                time.sleep(0.3)
            assert cut_at, f"host 0 never held rows while dispatching; states {states(db)}"
            assert done == N, (f"the other host did not finish after the cut: {states(db)}\n"
                               f"{logs[1].read_text(errors='replace')[-3000:]}")
            # the cut-off host comes back, in the middle of a batch it no longer owns
            victim.restore()
            before = victim.connections()
            returned = time.monotonic()
            restarted = False
            while time.monotonic() < returned + 20:
                if workers[0].poll() is not None and not restarted:  # type: ignore[union-attr]
                    # RQ quits when it finds its Redis connection gone: a supervisor starts it again, as here
                    workers[0] = start_worker(envs[0], logs[0], prefix=tuple(victim.argv()))
                    restarted = True
                time.sleep(0.5)
            back = victim.connections() - before
            after = states(db)
            kill_worker(workers[1], signal.SIGTERM)  # type: ignore[arg-type]
            workers[1] = None
            kill_worker(workers[0])  # type: ignore[arg-type]
            workers[0] = None
            sims.twilio.wait_for_callbacks(10)
            sims.whatsapp.wait_for_webhooks(10)
            run.final = states(db)
    finally:
        for proc in workers:
            if proc is not None:
                kill_worker(proc)
        sims.stop()
        redis.flushdb()
    judge(run, db, sims, ids)

    print(f"\ntwo hosts: {N} messages; host 0 cut off holding {len(stranded)} rows, host 1 finished "
          f"{taken_over_in:.1f}s later; after the link came back ({back} connections from host 0, its worker "
          f"{'restarted' if restarted else 'still running'}) {dict(after)}; events {dict(run.events)}; "
          f"per channel {run.by_channel()}")
    assert stranded, "the cut caught no rows in flight"
    assert back, "host 0 never reached the services again after its link came back"
    assert run.settled == N, f"not everything settled: {run.final}"
    assert sum(after[s] for s in SETTLED) == N, f"the returning host unsettled rows: {after}"
    twice = run.twice()
    if twice:
        raise AssertionError(f"{len(twice)} message(s) received more than once, e.g. {twice[:10]}:\n"
                             f"{story(db, twice[:3])}")
    lost = run.lost()
    assert not lost, f"{len(lost)} settled message(s) never arrived: {lost[:10]}\n{story(db, lost[:3])}"
    # every row the cut-off host held was taken over by the other one (reclaimed to the queue, or settled from
    # the provider's records, or held for a person), unless its request had left before the cut: then the
    # provider's own status webhook settled it (it arrived once: judged above)
    taken = set(db.session.scalars(sa.select(MessageEvent.message_id).where(
        MessageEvent.message_id.in_(stranded), MessageEvent.kind.in_(("reclaimed", "unknown", "review")))))
    reported = set(db.session.scalars(sa.select(MessageEvent.message_id).where(
        MessageEvent.message_id.in_(set(stranded) - taken), MessageEvent.kind.in_(PROVIDER_REPORTS))))
    left = sorted(set(stranded) - taken - reported)
    assert not left, f"rows of the cut-off host never reclaimed nor reported: {left}\n{story(db, left[:3])}"
    review = run.review()
    assert len(review) <= len(stranded), "rows went to review that the cut-off host did not hold"
    assert all(run.received[i] <= 1 for i in review)
