"""``make demo``: the whole product on embedded defaults (SQLite, in-process queue) against the simulators."""

from __future__ import annotations

import logging
from typing import Any

import click
import sqlalchemy as sa
from flask import Flask

from app.extensions import db
from app.models import User

log = logging.getLogger(__name__)

DEMO_EMAIL = "demo@recoup.example"
DEMO_PASSWORD = "recoup-demo-2026"


def seed_users() -> None:
    from app.users import create_user, ensure_roles

    ensure_roles()
    if db.session.scalar(sa.select(User).where(User.email == DEMO_EMAIL)) is None:
        create_user(
            DEMO_EMAIL, DEMO_PASSWORD, ["admin", "author", "approver", "operator"], name="Demo Admin", actor="demo"
        )
    db.session.commit()


def run_demo(app: Flask, *, host: str, port: int, serve: bool, fixed_ports: bool = True) -> dict[str, Any]:
    from flask_migrate import upgrade

    upgrade()
    seed_users()
    started: dict[str, Any] = {}
    from app.demo_world import start_world

    try:
        started = start_world(app, public_url=f"http://{host}:{port}", fixed_ports=fixed_ports)
    except OSError as exc:
        raise click.ClickException(f"could not start the simulators: {exc} (is another demo running?)") from None
    url = f"http://{host}:{port}/admin/"
    click.echo("")
    click.echo("Recoup demo is running on embedded defaults (SQLite, in-process queue).")
    click.echo(f"  Admin:    {url}")
    click.echo(f"  Sign in:  {DEMO_EMAIL}  /  {DEMO_PASSWORD}")
    for line in started.get("fetched", []):
        click.echo(f"  Fetched:  {line}")
    if started.get("dispatched") is not None:
        sent = started["dispatched"].get("sent", 0)
        click.echo(f"  Sent now: {sent} message(s); the rest wait for each customer's contact hours")
    for name, sim in started.get("simulators", {}).items():
        if name == "nmi":
            click.echo(f"  {name:9} simulator at {sim.url}/api (query.php, transact.php)")
            continue
        inbox = getattr(sim, "control_url", None) or sim.url
        click.echo(f"  {name:9} simulator at {sim.url}  inbox: {inbox}/inbox")
    click.echo("")
    if serve:
        from werkzeug.serving import run_simple

        run_simple(host, port, app, use_reloader=False, threaded=True)
    return started
