"""Migrations run from empty to head and back to base on both databases, and agree with the models."""

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
