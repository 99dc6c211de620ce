"""Operational commands: fetch, worker, sandbox, demo."""

from __future__ import annotations

import os
import signal
import threading

import click
from flask import current_app
from flask.cli import with_appcontext

from app.demo.simulators import quiet_access_log, start_simulators


@click.command("fetch")
@click.option("--gateway", "gateway", default=None, help="Only the gateway account with this name.")
@with_appcontext
def fetch_command(gateway: str | None) -> None:
    """One incremental fetch of failed transactions; prints what it found."""
    from app.ingest.transactions import fetch_accounts

    reports = fetch_accounts(name=gateway)
    if not reports:
        raise click.ClickException(
            "no gateway account to fetch"
            + (f" named {gateway!r}" if gateway else "")
            + " (add one in the admin, or set NMI_SECURITY_KEY)"
        )
    failed = False
    for report in reports:
        click.echo(report.summary())
        failed = failed or not report.ok
    if failed:
        raise SystemExit(1)


@click.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option("--simple", is_flag=True, help="Run jobs in the worker process (no fork).")
@with_appcontext
def worker_command(burst: bool, simple: bool) -> None:
    """An RQ worker on urgent, high, default, low (in that order), with RQ's scheduler."""
    from rq import SimpleWorker, Worker

    from app.ops.runtime import settle_garbage_collector
    from app.queue import RQQueue, get_queue
    from workers.context import set_worker_app
    from workers.schedule import chain_keeping, ensure_scheduled, periodic_jobs

    queue = get_queue()
    if not isinstance(queue, RQQueue):
        raise click.ClickException(
            "REDIS_URL is not set: on the embedded default, jobs run in-process (see `flask demo`)."
        )
    set_worker_app(current_app._get_current_object())  # type: ignore[attr-defined]
    chains = periodic_jobs(current_app.config)
    ids = ensure_scheduled(queue, chains)
    click.echo(f"periodic jobs scheduled: {', '.join(ids)}")
    cls = chain_keeping(SimpleWorker if simple else Worker, queue, chains)
    # maintenance (and so the chains' check) every WORKER_MAINTENANCE_SECONDS; an idle worker wakes as often for it
    every = max(1, int(current_app.config["WORKER_MAINTENANCE_SECONDS"]))
    worker = cls(queue.ordered_queues(), connection=queue.connection, maintenance_interval=every,
                 worker_ttl=every + 15)
    settle_garbage_collector()  # before its first job: what it loaded is kept out of every collection
    worker.work(with_scheduler=True, burst=burst)


@click.command("sandbox")
@click.option("--only", multiple=True, help="Run only these simulators.")
def sandbox_command(only: tuple[str, ...]) -> None:
    """Run the provider simulators (NMI, Twilio, WhatsApp, SMTP) until interrupted."""
    quiet_access_log()
    sims = start_simulators(list(only) or None)
    for name, sim in sims.items():
        inbox = getattr(sim, "control_url", None)
        click.echo(f"{name:9} {sim.url}" + (f"  inbox: {inbox}/inbox" if inbox else ""))
    _wait_forever()
    for sim in sims.values():
        sim.stop()


@click.command("demo")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=5000, type=int)
@click.option("--no-serve", is_flag=True, help="Set up and seed, then exit (used by tests).")
@with_appcontext
def demo_command(host: str, port: int, no_serve: bool) -> None:
    """The whole thing on embedded defaults: migrate, seed, simulators, scheduler, app."""
    from app.demo.run import run_demo

    free = os.environ.get("RECOUP_DEMO_FREE_PORTS") == "1"
    run_demo(
        current_app._get_current_object(),
        host=host,
        port=port,
        serve=not no_serve,  # type: ignore[attr-defined]
        fixed_ports=not free,
    )


def _wait_forever() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1):
            pass
    except KeyboardInterrupt:
        pass


__all__ = ["demo_command", "fetch_command", "sandbox_command", "worker_command", "quiet_access_log"]
