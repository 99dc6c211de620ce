"""Column types shared by the models: UTC datetimes, utf8mb4 tables, JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeDecorator

#: every table on MySQL/MariaDB: utf8mb4, so accents, CJK and emoji survive
MYSQL_TABLE_ARGS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A time read back without its zone (SQLite, a bulk query's raw row) as the UTC it was stored in."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A DATETIME that holds UTC: aware datetimes are converted on the way in, and come back aware in UTC.

    A naive datetime is refused: it is how local times sneak into a database, and we store UTC only.
    """

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "mysql":
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store times as aware UTC datetimes")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


#: JSON on both databases (MariaDB stores it as LONGTEXT with a JSON check)
JSONType = sa.JSON().with_variant(mysql.JSON(), "mysql")
#: long text that must hold a whole policy or a raw provider record
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql")
