"""``flask analytics ...``: the rollups the dashboard reads."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from flask.cli import AppGroup

analytics_cli = AppGroup("analytics", help="Recovery analytics: the rollups the dashboard reads.")


def _moment(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date or time (YYYY-MM-DD or YYYY-MM-DDTHH:MM, UTC)",
                                 param_hint="--since") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@analytics_cli.command("rebuild")
@click.option("--since", help="recompute only cases opened and messages sent from the week of this date on (from "
              "its Monday, UTC), e.g. 2026-11-01")
def analytics_rebuild(since: str | None) -> None:
    """Recompute the rollups from the raw rows (all of them, or from --since on)."""
    from app.analytics.cubes import first_day
    from app.analytics.rollups import rebuild
    from app.locks import Busy

    start = _moment(since)
    try:
        counts = rebuild(start)
    except Busy:
        click.echo("another analytics refresh or rebuild is running; try again in a minute", err=True)
        raise SystemExit(1) from None
    # the weekly cubes count whole weeks: a rebuild from a Wednesday starts on that week's Monday
    scope = "all"
    if start is not None:
        monday = first_day(start)
        scope = f"from {monday:%Y-%m-%d %H:00} UTC" + (
            f", the Monday of {start:%Y-%m-%d}'s week" if monday.date() != start.date() else "")
    click.echo(f"analytics rebuilt ({scope}): {counts['cases']} case(s), {counts['messages']} message(s) counted")


@analytics_cli.command("refresh")
def analytics_refresh() -> None:
    """Count what changed since the last refresh (what the periodic job does)."""
    from app.analytics.rollups import refresh_changed

    counts = refresh_changed()
    click.echo(f"analytics refreshed: {counts['cases']} case(s), {counts['messages']} message(s) changed")
