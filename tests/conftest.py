"""The fixture ladder: backend → app → client → runner → sign-in helper.

Every test that takes ``app`` runs twice: on SQLite (a file per test session) and on MariaDB (a fresh database per
test session, dropped at the end). Queue tests take ``queue`` and run in-process and on real Redis.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests import backends

RUNS: Counter[str] = Counter()


def pytest_configure(config: pytest.Config) -> None:
    config._recoup_mysql = backends.mysql_available()  # type: ignore[attr-defined]
    config._recoup_redis = backends.redis_available()  # type: ignore[attr-defined]
    if backends.IN_CI:
        missing = [name for name, ok in (("MariaDB", config._recoup_mysql), ("Redis", config._recoup_redis)) if not ok]
        if missing:
            raise pytest.UsageError(
                f"CI=true but {' and '.join(missing)} did not answer "
                f"({backends.MYSQL_SERVER_URL}, {backends.REDIS_URL}); refusing to skip their tests"
            )


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: its counts go to the controller, which prints the summary
        workeroutput["recoup_runs"] = dict(RUNS)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:  # type: ignore[no-untyped-def]
    RUNS.update(getattr(node, "workeroutput", {}).get("recoup_runs", {}))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    tr = terminalreporter
    tr.section("Recoup backends")
    mysql = "yes" if config._recoup_mysql else "NOT AVAILABLE (skipped)"
    redis = "yes" if config._recoup_redis else "NOT AVAILABLE (skipped)"
    tr.write_line(f"SQLite tests run:       {RUNS['sqlite']}")
    tr.write_line(f"MariaDB tests run:      {RUNS['mysql']}  (server {backends.MYSQL_SERVER_URL}: {mysql})")
    tr.write_line(f"in-process queue runs:  {RUNS['inprocess']}")
    tr.write_line(f"Redis queue runs:       {RUNS['redis']}  (server {backends.REDIS_URL}: {redis})")


# -- databases ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mysql_database_url(pytestconfig: pytest.Config) -> Iterator[str]:
    if not pytestconfig._recoup_mysql:  # type: ignore[attr-defined]
        pytest.skip("MariaDB/MySQL not available")
    with backends.temporary_mysql_database() as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'recoup-test.db'}"


_MIGRATED: set[str] = set()


def _build_app(url: str):  # type: ignore[no-untyped-def]
    from app import create_app
    from config import TestingConfig

    app = create_app(
        TestingConfig,
        SQLALCHEMY_DATABASE_URI=url,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True} if url.startswith("mysql") else {},
    )
    if url not in _MIGRATED:
        from flask_migrate import upgrade

        with app.app_context():
            upgrade()
        _MIGRATED.add(url)
    return app


def _empty_all_tables(app) -> None:  # type: ignore[no-untyped-def]
    from app.extensions import db

    with app.app_context():
        db.session.remove()
        engine = db.engine
        tables = [t.name for t in reversed(db.metadata.sorted_tables)]
        with engine.begin() as conn:
            if engine.dialect.name == "mysql":
                conn.execute(sa.text("SET FOREIGN_KEY_CHECKS=0"))
                for name in tables:
                    conn.execute(sa.text(f"DELETE FROM `{name}`"))
                conn.execute(sa.text("SET FOREIGN_KEY_CHECKS=1"))
            else:
                conn.execute(sa.text("PRAGMA foreign_keys=OFF"))
                for name in tables:
                    conn.execute(sa.text(f'DELETE FROM "{name}"'))
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> str:
    name = "mysql_database_url" if backend == "mysql" else "sqlite_database_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def app(database_url: str, backend: str):  # type: ignore[no-untyped-def]
    app = _build_app(database_url)
    RUNS[backend] += 1
    ctx = app.app_context()
    ctx.push()
    try:
        yield app
    finally:
        ctx.pop()
        _empty_all_tables(app)


@pytest.fixture
def db(app):  # type: ignore[no-untyped-def]
    from app.extensions import db as _db

    return _db


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture
def runner(app):  # type: ignore[no-untyped-def]
    return app.test_cli_runner()


class AuthActions:
    def __init__(self, client, app) -> None:  # type: ignore[no-untyped-def]
        self.client = client
        self.app = app

    def login(self, role: str = "admin", password: str = "correct horse battery") -> str:
        from app.accounts.users import create_user

        email = f"{role}-{uuid.uuid4().hex[:6]}@example.com"
        create_user(email, password, [role])
        response = self.client.post("/login", data={"email": email, "password": password})
        assert response.status_code == 302, response.get_data(as_text=True)
        return email

    def logout(self) -> None:
        self.client.post("/logout")


@pytest.fixture
def auth(client, app) -> AuthActions:  # type: ignore[no-untyped-def]
    return AuthActions(client, app)


# -- queues ------------------------------------------------------------------------------------------------------


@pytest.fixture(params=["inprocess", pytest.param("redis", marks=pytest.mark.redis)])
def queue_backend(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> str:
    if request.param == "redis" and not pytestconfig._recoup_redis:  # type: ignore[attr-defined]
        pytest.skip("Redis not available")
    RUNS[str(request.param)] += 1
    return str(request.param)


@pytest.fixture
def redis_url(queue_backend: str) -> Iterator[str | None]:
    if queue_backend != "redis":
        yield None
        return
    from redis import Redis

    conn = Redis.from_url(backends.REDIS_URL)
    conn.flushdb()
    try:
        yield backends.REDIS_URL
    finally:
        conn.flushdb()
        conn.close()
