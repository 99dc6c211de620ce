"""Migrations run from empty to head and back to base on both databases, and agree with the models."""

from datetime import date

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from app import create_app
from app.extensions import db
from config import TestingConfig
from tests import backends


@pytest.fixture
def empty_database_url(backend, tmp_path, pytestconfig):
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    if not pytestconfig._recoup_mysql:
        pytest.skip("MariaDB/MySQL not available")
    with backends.temporary_mysql_database("recoup_mig") as url:
        yield url


def test_upgrade_from_empty_then_downgrade_to_base(empty_database_url):
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=empty_database_url)
    with app.app_context():
        upgrade()
        tables = set(sa.inspect(db.engine).get_table_names())
        assert set(db.metadata.tables) <= tables
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), db.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
        downgrade(revision="base")
        assert set(sa.inspect(db.engine).get_table_names()) <= {"alembic_version"}
        upgrade()  # and once more: a downgrade leaves nothing behind that blocks the next upgrade
        db.engine.dispose()


def test_mysql_tables_are_utf8mb4(app, backend):
    if backend != "mysql":
        pytest.skip("a MySQL property")
    rows = db.session.execute(
        sa.text("SELECT table_name, table_collation FROM information_schema.tables WHERE table_schema = DATABASE()")
    ).all()
    assert rows and all(collation.startswith("utf8mb4") for _, collation in rows), rows
    money = db.session.execute(
        sa.text(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = DATABASE() "
            "AND column_name LIKE '%%amount%%'"
        )
    ).all()
    assert money and all(dtype == "bigint" for _, dtype in money), money


def test_the_weekly_cubes_start_filled_from_the_daily_ones(empty_database_url):
    """Upgrading a database whose daily cubes hold counts fills the weekly cubes with their sums by week (Monday),
    so the dashboard reads the same numbers before any recount."""
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=empty_database_url)
    with app.app_context():
        upgrade(revision="e3a0c0de0003")
        days = sa.table("analytics_message_days", sa.column("day", sa.Date), *(sa.column(c) for c in (
            "currency", "channel", "dim", "value", "sent_n", "delivered_n", "read_n", "clicked_n",
            "optout_n", "paid_n", "paid_minor", "any_n", "any_minor", "first_n", "won72_n")))
        row = dict(currency="EUR", channel="sms", dim="*", value="null", delivered_n=0, read_n=0, clicked_n=0,
                   optout_n=0, paid_n=0, paid_minor=0, any_n=0, any_minor=0, first_n=0, won72_n=0)
        grid = sa.table("analytics_message_hours", sa.column("day", sa.Date), *(sa.column(c) for c in (
            "dim", "value", "currency", "channel", "weekday", "sent_n_h19")))
        with db.engine.begin() as conn:
            # Sunday 2026-09-13 ends one week, Monday 09-14 and Wednesday 09-16 fall in the next
            conn.execute(sa.insert(days), [{**row, "day": date.fromisoformat(d), "sent_n": n} for d, n in (
                ("2026-09-13", 2), ("2026-09-14", 3), ("2026-09-16", 4))])
            cell = {"dim": "*", "value": "null", "currency": "EUR", "channel": "sms", "weekday": 2}
            conn.execute(sa.insert(grid), [{**cell, "day": date.fromisoformat(d), "sent_n_h19": n}
                                           for d, n in (("2026-09-14", 5), ("2026-09-16", 6))])
        upgrade()
        with db.engine.connect() as conn:
            weeks = conn.execute(sa.text("SELECT day, sent_n FROM analytics_message_weeks ORDER BY day")).all()
            hours = conn.execute(sa.text("SELECT day, sent_n_h19, sent_n_h18 FROM analytics_message_hour_weeks"))
            assert [(str(d), n) for d, n in weeks] == [("2026-09-07", 2), ("2026-09-14", 7)]
            assert [(str(d), n, m) for d, n, m in hours] == [("2026-09-14", 11, 0)]
        db.engine.dispose()
