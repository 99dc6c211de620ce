"""``flask users ...``: accounts for the admin."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from app.models import ROLES

users_cli = AppGroup("users", help="Admin accounts.")


@users_cli.command("create")
@click.option("--email", prompt=True)
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice(sorted(ROLES)))
@click.option("--name", default=None)
@click.password_option()
def create(email: str, roles: tuple[str, ...], name: str | None, password: str) -> None:
    """Create an account, e.g. the first one: users create --role admin."""
    from app.accounts.users import UserError, create_user

    try:
        user = create_user(email, password, list(roles), name=name)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {user.email} with role(s) {', '.join(roles)}")
