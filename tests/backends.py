"""Where the real services for tests are, and whether they answer.

MariaDB/MySQL: ``RECOUP_TEST_MYSQL_URL`` (a server URL; each test run creates its own database and drops it), else
the local default ``mysql+pymysql://root:@127.0.0.1:3306``. Redis: ``RECOUP_TEST_REDIS_URL``, else
``redis://127.0.0.1:6379/15`` (a database index of the tests' own, flushed; one per xdist worker). When ``CI=true``
a missing server fails the run instead of skipping its tests.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

MYSQL_SERVER_URL = os.environ.get("RECOUP_TEST_MYSQL_URL", "mysql+pymysql://root:@127.0.0.1:3306")
#: under pytest-xdist (``make test`` runs two workers) each worker gets a Redis database of its own: the given index
#: for the first worker, one less for each next (15, 14, ...)
WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)


def _worker_redis_url(url: str) -> str:
    base, _, index = url.rpartition("/")
    if not base.startswith("redis") or not index.isdigit():
        return url
    return f"{base}/{max(0, int(index) - WORKER)}"


REDIS_URL = _worker_redis_url(os.environ.get("RECOUP_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
#: Redis databases for tests that run worker processes of their own (crash, two hosts, soak): never a worker's
SPARE_REDIS_DBS = range(1, 12)
SPARE_NAMES = ("crash", "two-hosts", "soak")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def spare_redis_url(name: str) -> str:
    """A Redis database of its own for the test ``name`` (one of :data:`SPARE_NAMES`), which starts workers of its
    own: each such test on each xdist worker takes another, so none takes another's jobs. ``RECOUP_<NAME>_REDIS_DB``
    (``RECOUP_TWO_HOSTS_REDIS_DB``, ...) names one instead."""
    chosen = os.environ.get(f"RECOUP_{name.upper().replace('-', '_')}_REDIS_DB")
    slot = (WORKER * (len(SPARE_NAMES) + 1) + SPARE_NAMES.index(name)) % len(SPARE_REDIS_DBS)
    index = chosen or SPARE_REDIS_DBS[slot]
    return REDIS_URL.rsplit("/", 1)[0] + f"/{index}"


def _answers(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False


def mysql_available() -> bool:
    return _answers(MYSQL_SERVER_URL, 3306)


def redis_available() -> bool:
    return _answers(REDIS_URL, 6379)


def server_url_without_db(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@contextmanager
def temporary_mysql_database(prefix: str = "recoup_test") -> Iterator[str]:
    """A fresh utf8mb4 database on the test server, dropped afterwards; yields its URL."""
    import secrets

    import sqlalchemy as sa

    server = server_url_without_db(MYSQL_SERVER_URL)
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
    try:
        yield f"{server}/{name}?charset=utf8mb4"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()
