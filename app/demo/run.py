"""``make demo``: the whole product on embedded defaults (SQLite, in-process queue) against the simulators."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa
from flask import Flask

from app.extensions import db
from app.models import User
from config import INSTANCE_DIR

log = logging.getLogger(__name__)

DEMO_EMAIL = "demo@recoup.example"
DEMO_PASSWORD = "recoup-demo-2026"
#: who can sign in to the demo: (email, password, role). Four-eyes approval needs an author and an approver.
DEMO_ACCOUNTS: tuple[tuple[str, str, str], ...] = (
    (DEMO_EMAIL, DEMO_PASSWORD, "admin"),
    ("author@recoup.example", "recoup-author-2026", "author"),
    ("approver@recoup.example", "recoup-approver-2026", "approver"),
)
_ACCOUNT_ROLES = {"admin": ["admin", "author", "approver", "operator"], "author": ["author"], "approver": ["approver"]}
_ACCOUNT_NAMES = {"admin": "Demo Admin", "author": "Ana Author", "approver": "Bo Approver"}
#: cards for the payment page (sandbox/nmi/collect.py decides): number -> "approve" or the NMI decline code
TEST_CARDS: tuple[tuple[str, str], ...] = (
    ("4111 1111 1111 1111", "approve"),
    ("5431 1111 1111 1111", "approve"),
    ("4000 0000 0000 0002", "201"),
    ("4000 0000 0000 9995", "202"),
)
_CARD_WORDS = {"approve": "approves", "201": "declines (201, do not honor)",
               "202": "declines (202, insufficient funds)"}


def seed_users() -> None:
    from app.accounts.users import create_user, ensure_roles

    ensure_roles()
    for email, password, role in DEMO_ACCOUNTS:
        if db.session.scalar(sa.select(User).where(User.email == email)) is None:
            create_user(email, password, _ACCOUNT_ROLES[role], name=_ACCOUNT_NAMES[role], actor="demo")
    db.session.commit()


def inbox_folder(database_url: str) -> Path:
    """Where the simulators keep their inboxes: beside the demo's SQLite file, so the two always go together."""
    if database_url.startswith("sqlite:///") and ":memory:" not in database_url:
        database = Path(database_url.removeprefix("sqlite:///"))
        return database.parent / f"{database.stem}-inboxes"
    return INSTANCE_DIR / "demo-inboxes"


def _fresh_database() -> bool:
    return not sa.inspect(db.engine).has_table("users")


def run_demo(app: Flask, *, host: str, port: int, serve: bool, fixed_ports: bool = True) -> dict[str, Any]:
    from flask_migrate import upgrade

    from app.demo.simulators import quiet_access_log

    if app.config.get("ENV_NAME") == "production":  # seeded sign-ins with published passwords, a movable clock
        raise click.ClickException(
            "the demo does not run under the production configuration (RECOUP_CONFIG=production): it seeds users "
            "whose passwords are published and lets the clock be moved; run it without RECOUP_CONFIG"
        )
    quiet = quiet_access_log()
    app.config.update(DEMO_MODE=True)
    from admin.demo import register

    for admin in app.extensions.get("admin", []):  # the app was built before the demo was on
        register(admin)
    inboxes = inbox_folder(app.config["SQLALCHEMY_DATABASE_URI"])
    if _fresh_database():  # a new database: inboxes left from an older one would show messages it never sent
        shutil.rmtree(inboxes, ignore_errors=True)
    upgrade()
    seed_users()
    from app.demo.history import wanted
    from app.demo.world import start_world

    try:
        started = start_world(app, public_url=f"http://{host}:{port}", fixed_ports=fixed_ports, inboxes=inboxes,
                              history=wanted(app))
    except OSError as exc:
        raise click.ClickException(f"could not start the simulators: {exc} (is another demo running?)") from None
    from app.demo.control import count_for_the_dashboard

    count_for_the_dashboard()  # the seeded failures are on the dashboard from the first page
    _banner(f"http://{host}:{port}", started, quiet)
    if serve:
        from werkzeug.serving import run_simple

        run_simple(host, port, app, use_reloader=False, threaded=True)
    return started


def _banner(base: str, started: dict[str, Any], quiet: bool) -> None:
    echo = click.echo
    echo("")
    echo(click.style("Recoup demo is running", bold=True) + " on embedded defaults (SQLite, in-process queue).")
    echo(f"  Admin:      {base}/admin/")
    for email, password, role in DEMO_ACCOUNTS:
        echo(f"  Sign in:    {email:26} {password:22} {role}")
    echo(click.style("  First:", bold=True) + f"      sign in as {DEMO_EMAIL}, open Demo control ({base}/admin/demo/),")
    echo("              fail a payment (country ES for Spanish), then move the clock to the next scheduled step")
    echo("              and open the inbox: its link is the customer's payment page.")
    for n, (number, outcome) in enumerate(TEST_CARDS):
        echo(f"  {'Test cards:' if n == 0 else '':11} {number}  {_CARD_WORDS[outcome]}")
    echo("              any future expiry date, any CVV")
    echo("  Approval:   the author writes and submits a policy; the approver approves and activates it.")
    inboxes = started.get("inboxes", {})
    echo("  Inboxes:    " + "  ".join(f"{name} {url}" for name, url in inboxes.items()))
    nmi = started.get("simulators", {}).get("nmi")
    if nmi is not None:
        echo(f"  NMI:        {nmi.url}/api (query.php, transact.php)")
    history = started.get("history")
    if history is not None:
        echo(f"  History:    {history.summary()}")
    for line in started.get("fetched", []):
        echo(f"  Fetched:    {line.split('; sales:')[0]}")
    if started.get("dispatched") is not None:
        sent = started["dispatched"].get("sent", 0)
        echo(f"  Sent now:   {sent} message(s); the rest wait for each customer's contact hours")
    echo("  Guide:      docs/merchants.md")
    if quiet:
        echo("  Requests are not logged (RECOUP_ACCESS_LOG=1 logs each one). Stop with Ctrl+C.")
    echo("")
