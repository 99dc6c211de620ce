"""``flask --app wsgi ...`` commands."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup


def register_cli(app: Flask) -> None:
    from app.cli.analytics import analytics_cli
    from app.cli.ops import demo_command, fetch_command, sandbox_command, worker_command
    from app.cli.users import users_cli

    app.cli.add_command(analytics_cli)
    app.cli.add_command(users_cli)
    app.cli.add_command(fetch_command)
    app.cli.add_command(worker_command)
    app.cli.add_command(sandbox_command)
    app.cli.add_command(demo_command)
    app.cli.add_command(audit_cli)
    app.cli.add_command(secrets_cli)
    try:
        from app.cli.policy import policy_cli
    except ImportError:  # the policy language is optional only while it is being built
        pass
    else:
        app.cli.add_command(policy_cli)


audit_cli = AppGroup("audit", help="The audit log.")
secrets_cli = AppGroup("secrets", help="Secrets stored in the database.")


@secrets_cli.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt every stored secret with the first key of RECOUP_ENCRYPTION_KEY (then the old key can go)."""
    from flask import current_app

    from app.accounts.secrets import SecretsError, rotate_credentials

    try:
        moved = rotate_credentials(current_app.config)
    except SecretsError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(1) from None
    click.echo(f"re-encrypted {moved} stored secret(s) with the first key")


@audit_cli.command("verify")
def audit_verify() -> None:
    """Check the audit log: its keyed hash chain, its signed head and the checkpoint file; name what is wrong."""
    from app.audit import verify_chain

    result = verify_chain()
    if result.ok:
        click.echo(f"audit log intact: {result.checked} entries")
        return
    if result.kind == "entry":
        where = f" at entry {result.first_broken_id}"
    else:  # the signed head or the checkpoint file: no entry of its own is wrong
        where = f" ({'checkpoint file' if result.kind == 'checkpoint' else 'signed head'})"
    click.echo(f"audit log BROKEN{where}: {result.problem}", err=True)
    raise SystemExit(1)


@audit_cli.command("checkpoint")
def audit_checkpoint() -> None:
    """Write the audit log's signed head to AUDIT_CHECKPOINT_PATH (keep a copy off this machine too); `audit verify`
    then also checks that the log still holds what it names."""
    from flask import current_app

    from app.audit import write_checkpoint

    checkpoint = write_checkpoint()
    click.echo(f"checkpoint of entry #{checkpoint['last_id']} ({checkpoint['entries']} entries) written to "
               f"{current_app.config['AUDIT_CHECKPOINT_PATH']}")
