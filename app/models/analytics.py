"""Recovery analytics: what each case and each sent message contributes (its *facts*), and the hourly rollups the
dashboard reads, kept current by app.analytics. A rollup row is the sum of the facts sharing its hour and
dimensions; a fact row remembers what was added, so a case or message looked at again changes the totals by the
difference only (late, duplicated and re-delivered events give the same totals)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import MYSQL_TABLE_ARGS, UTCDateTime

#: what a case is counted by: its gateway, currency, decline, segment, the customer's language (of their locale: es,
#: en, ...), policy version, holdout, and how it was paid (the method of the payment that completed it: new_card,
#: vault, ach, retry, ...; "elsewhere"; none while unpaid)
CASE_DIMENSIONS = ("gateway", "currency", "decline_reason", "decline_code", "value_band", "first_time",
                   "product_type", "vip", "language", "policy_version_id", "holdout", "paid_with")
#: failed = every case (its first failure); recovered = paid through Recoup; elsewhere = marked paid outside it;
#: still open = not closed yet (kept in the denominator); organic = recovered through Recoup with no touch in the
#: attribution window before the payment (credited to no message)
#: and how long recoveries through Recoup took, from the case opening to the payment, as a histogram (summable, so
#: a median and a p90 can be read from any rollup): within 1 h, 6 h, 24 h, 3, 7, 14, 30 days, or longer
TIME_TO_RECOVER = (("ttr_1h", 1), ("ttr_6h", 6), ("ttr_24h", 24), ("ttr_3d", 72), ("ttr_7d", 168),
                   ("ttr_14d", 336), ("ttr_30d", 720), ("ttr_more", None))
CASE_MEASURES = ("failed_n", "failed_minor", "recovered_n", "recovered_minor", "elsewhere_n", "elsewhere_minor",
                 "open_n", "organic_n", "organic_minor", *(name for name, _ in TIME_TO_RECOVER))
#: what a sent message is counted by: its case's dimensions that matter for a send, and its own
MESSAGE_DIMENSIONS = ("channel", "template", "variant", "policy_version_id", "local_hour", "weekday", "gateway",
                      "currency", "decline_reason", "value_band", "first_time", "product_type", "vip", "language")
#: the funnel: sent -> delivered -> read (an email opened) -> clicked -> paid (the last touch before the payment,
#: within the attribution window); any touch: the recoveries this message took part in (the last message of its
#: channel before the payment, within the window: a case counts once per channel); and, for the best times, first
#: touches (a case's first message) and those whose case Recoup recovered within 72 h
MESSAGE_MEASURES = ("sent_n", "delivered_n", "read_n", "clicked_n", "optout_n", "paid_n", "paid_minor", "any_n",
                    "any_minor", "first_n", "won72_n")

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


class _Counted:
    """Where a fact or a rollup row counts: its hour (UTC) and the key of its dimensions' values."""

    bucket: Mapped[datetime] = mapped_column(UTCDateTime)
    dims_key: Mapped[str] = mapped_column(sa.String(40))


class _CaseMeasures:
    failed_n: Mapped[int] = mapped_column(sa.Integer, default=0)
    failed_minor: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    recovered_n: Mapped[int] = mapped_column(sa.Integer, default=0)
    recovered_minor: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    elsewhere_n: Mapped[int] = mapped_column(sa.Integer, default=0)
    elsewhere_minor: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    open_n: Mapped[int] = mapped_column(sa.Integer, default=0)
    organic_n: Mapped[int] = mapped_column(sa.Integer, default=0)
    organic_minor: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    ttr_1h: Mapped[int] = mapped_column(sa.Integer, default=0)
    ttr_6h: Mapped[int] = mapped_column(sa.Integer, default=0)
    ttr_24h: Mapped[int] = mapped_column(sa.Integer, default=0)
    ttr_3d: Mapped[int] = mapped_column(sa.Integer, default=0)
    ttr_7d: Mapped[int] = mapped_column(sa.Integer, default=0)
    ttr_14d: Mapped[int] = mapped_column(sa.Integer, default=0)
    ttr_30d: Mapped[int] = mapped_column(sa.Integer, default=0)
    ttr_more: Mapped[int] = mapped_column(sa.Integer, default=0)


class _MessageMeasures:
    sent_n: Mapped[int] = mapped_column(sa.Integer, default=0)
    delivered_n: Mapped[int] = mapped_column(sa.Integer, default=0)
    read_n: Mapped[int] = mapped_column(sa.Integer, default=0)
    clicked_n: Mapped[int] = mapped_column(sa.Integer, default=0)
    optout_n: Mapped[int] = mapped_column(sa.Integer, default=0)
    paid_n: Mapped[int] = mapped_column(sa.Integer, default=0)
    paid_minor: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    any_n: Mapped[int] = mapped_column(sa.Integer, default=0)
    any_minor: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    first_n: Mapped[int] = mapped_column(sa.Integer, default=0)
    won72_n: Mapped[int] = mapped_column(sa.Integer, default=0)


class CaseFact(_Counted, _CaseMeasures, db.Model):
    """What one case adds to ``analytics_cases`` now."""

    __tablename__ = "analytics_case_facts"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    case_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=False)


class MessageFact(_Counted, _MessageMeasures, db.Model):
    """What one sent message adds to ``analytics_messages`` now."""

    __tablename__ = "analytics_message_facts"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    message_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=False)


class CaseRollup(_Counted, _CaseMeasures, db.Model):
    """Cases by the hour they opened (UTC) and their dimensions."""

    __tablename__ = "analytics_cases"
    __table_args__ = (sa.UniqueConstraint("bucket", "dims_key", name="uq_analytics_cases_key"),
                      sa.Index("ix_analytics_cases_bucket", "bucket"), MYSQL_TABLE_ARGS)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    gateway: Mapped[str | None] = mapped_column(sa.String(32))
    currency: Mapped[str | None] = mapped_column(sa.String(32))
    decline_reason: Mapped[str | None] = mapped_column(sa.String(32))
    decline_code: Mapped[str | None] = mapped_column(sa.String(32))
    value_band: Mapped[str | None] = mapped_column(sa.String(32))
    first_time: Mapped[str | None] = mapped_column(sa.String(32))
    product_type: Mapped[str | None] = mapped_column(sa.String(32))
    vip: Mapped[bool | None] = mapped_column(sa.Boolean)
    language: Mapped[str | None] = mapped_column(sa.String(32))
    policy_version_id: Mapped[int | None] = mapped_column(sa.Integer)
    holdout: Mapped[bool | None] = mapped_column(sa.Boolean)
    paid_with: Mapped[str | None] = mapped_column(sa.String(32))


class MessageRollup(_Counted, _MessageMeasures, db.Model):
    """Sent messages by the hour they went (UTC) and their dimensions, the customer's local hour and weekday
    among them."""

    __tablename__ = "analytics_messages"
    __table_args__ = (sa.UniqueConstraint("bucket", "dims_key", name="uq_analytics_messages_key"),
                      sa.Index("ix_analytics_messages_bucket", "bucket"), MYSQL_TABLE_ARGS)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    channel: Mapped[str | None] = mapped_column(sa.String(32))
    template: Mapped[str | None] = mapped_column(sa.String(32))
    variant: Mapped[str | None] = mapped_column(sa.String(32))
    policy_version_id: Mapped[int | None] = mapped_column(sa.Integer)
    local_hour: Mapped[int | None] = mapped_column(sa.Integer)
    weekday: Mapped[int | None] = mapped_column(sa.Integer)
    gateway: Mapped[str | None] = mapped_column(sa.String(32))
    currency: Mapped[str | None] = mapped_column(sa.String(32))
    decline_reason: Mapped[str | None] = mapped_column(sa.String(32))
    value_band: Mapped[str | None] = mapped_column(sa.String(32))
    first_time: Mapped[str | None] = mapped_column(sa.String(32))
    product_type: Mapped[str | None] = mapped_column(sa.String(32))
    vip: Mapped[bool | None] = mapped_column(sa.Boolean)
    language: Mapped[str | None] = mapped_column(sa.String(32))


#: the daily cubes: one dimension at a time. Each fact adds to one row per dimension (its value there) and to the
#: row of dimension ``*`` (everything): a dashboard query that filters or groups by at most one dimension besides
#: the day, the currency (and, for messages, the channel) reads a few hundred rows whatever the volume, while the
#: hourly rollups above answer any combination. Values are kept as JSON text (``null``, ``"high"``, ``true``, ``3``)
#: so that NULL is a value like any other in the unique key.
ALL = "*"
CASE_CUBE_DIMENSIONS = tuple(d for d in CASE_DIMENSIONS if d != "currency")
#: the local hour (and the best-times [weekday, hour] slot) of a send is read from the hour grid below, not from
#: a row per hour
MESSAGE_CUBE_DIMENSIONS = tuple(d for d in MESSAGE_DIMENSIONS if d not in ("currency", "channel", "local_hour"))


class _Daily:
    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date)
    currency: Mapped[str] = mapped_column(sa.String(32))
    dim: Mapped[str] = mapped_column(sa.String(32))
    value: Mapped[str] = mapped_column(sa.String(80))


class CaseDay(_Daily, _CaseMeasures, db.Model):
    """Cases by the day they opened (UTC), their currency and one dimension's value."""

    __tablename__ = "analytics_case_days"
    __table_args__ = (sa.UniqueConstraint("dim", "day", "currency", "value", name="uq_analytics_case_days_key"),
                      MYSQL_TABLE_ARGS)


class MessageDay(_Daily, _MessageMeasures, db.Model):
    """Sent messages by the day they went (UTC), their currency, channel and one dimension's value."""

    __tablename__ = "analytics_message_days"
    __table_args__ = (sa.UniqueConstraint("dim", "day", "currency", "channel", "value",
                                          name="uq_analytics_message_days_key"), MYSQL_TABLE_ARGS)

    channel: Mapped[str] = mapped_column(sa.String(32))


class _Weekly:
    """A daily cube's rows summed by week: ``day`` is the week's Monday (UTC). A long period reads its whole weeks
    from here and only its first and last few days from the daily cube (app.analytics.report), so a 90-day question
    reads about as many rows for 10,000 failures as for a million: a week fills its rows at a much lower volume
    than a day does."""

    dim: Mapped[str] = mapped_column(sa.String(32))
    day: Mapped[date] = mapped_column(sa.Date)
    currency: Mapped[str] = mapped_column(sa.String(32))
    value: Mapped[str] = mapped_column(sa.String(80))


class CaseWeek(_Weekly, _CaseMeasures, db.Model):
    """Cases by the week they opened (its Monday, UTC), their currency and one dimension's value."""

    __tablename__ = "analytics_case_weeks"
    __table_args__ = (sa.PrimaryKeyConstraint("dim", "day", "currency", "value"), MYSQL_TABLE_ARGS)


class MessageWeek(_Weekly, _MessageMeasures, db.Model):
    """Sent messages by the week they went (its Monday, UTC), their currency, channel and one dimension's value."""

    __tablename__ = "analytics_message_weeks"
    __table_args__ = (sa.PrimaryKeyConstraint("dim", "day", "currency", "channel", "value"), MYSQL_TABLE_ARGS)

    channel: Mapped[str] = mapped_column(sa.String(32))


#: the dimensions the dashboard filters by besides the currency and the channel (admin.dashboard.FILTERS): a
#: question with one of them and one other dimension reads a pair cube below
FILTER_DIMENSIONS = ("gateway", "decline_reason", "value_band", "first_time", "product_type", "vip", "language",
                     "policy_version_id")


def _case_pairs() -> tuple[tuple[str, str], ...]:
    """Each filter dimension with each other case dimension, once per unordered pair (28 pairs of two filters,
    24 of a filter and decline_code, holdout or paid_with: 52)."""
    pairs = []
    for i, first in enumerate(FILTER_DIMENSIONS):
        for other in CASE_CUBE_DIMENSIONS:
            if other != first and other not in FILTER_DIMENSIONS[:i]:
                pairs.append((first, other))
    return tuple(pairs)


#: the daily pair cubes: a fact adds to one row per pair, under the pair's two values. Cases: every filter with
#: every other case dimension (52 pairs). Messages: every filter with the breakdowns only messages have, template,
#: variant and weekday (24 pairs); the local hour and the best-times slot are read from the hour grid below, and a
#: filter with a case dimension is a question about cases. Two filters (besides day, currency and channel) with a
#: breakdown, or two filters with a message breakdown, are read from the hourly rollups.
CASE_PAIRS = _case_pairs()
MESSAGE_PAIRS = tuple((first, other) for first in FILTER_DIMENSIONS for other in ("template", "variant", "weekday"))


def pair_name(first: str, other: str) -> str:
    return f"{first}|{other}"


class CasePair(_CaseMeasures, db.Model):
    """Cases by the day they opened (UTC), their currency and the values of a pair of dimensions (``pair`` names
    them, ``first|other``)."""

    __tablename__ = "analytics_case_pairs"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    pair: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    first: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    currency: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    other: Mapped[str] = mapped_column(sa.String(80), primary_key=True)


class MessagePair(_MessageMeasures, db.Model):
    """Sent messages by the day they went (UTC), their currency, channel and the values of a pair of dimensions."""

    __tablename__ = "analytics_message_pairs"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    pair: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    first: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    currency: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    channel: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    other: Mapped[str] = mapped_column(sa.String(80), primary_key=True)


#: the hour grid: sent messages by the day they went (UTC), currency, channel, the customer's local weekday and
#: (everything, or) one filter dimension's value, with each measure in 24 columns, one per local hour
#: (``sent_n_h07``). A day's sends fall on two or three local weekdays, so a day holds a handful of rows per
#: currency and channel at any volume, where 168 rows of weekday and hour would fill only with thousands of sends a
#: day: the best-times grid and the local-hour breakdown read the same few rows for 10,000 messages or 10 million.
HOURS = range(24)
GRID_DIMENSIONS = (ALL, *FILTER_DIMENSIONS)


def hour_column(measure: str, hour: int) -> str:
    return f"{measure}_h{hour:02d}"


def _grid_columns() -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for measure in MESSAGE_MEASURES:
        kind = sa.BigInteger if measure.endswith("_minor") else sa.Integer
        for hour in HOURS:
            # zero by default in the database too: a batch writes a row's columns of the hours it moved only
            columns[hour_column(measure, hour)] = sa.Column(kind, nullable=False, default=0,
                                                            server_default=sa.text("0"))
    return columns


def _hour_grid(name: str, table: str, doc: str) -> Any:
    return type(name, (db.Model,), {
        "__doc__": doc,
        "__tablename__": table,
        "__table_args__": (MYSQL_TABLE_ARGS,),
        "dim": sa.Column(sa.String(32), primary_key=True),
        "value": sa.Column(sa.String(80), primary_key=True),
        "day": sa.Column(sa.Date, primary_key=True),
        "currency": sa.Column(sa.String(32), primary_key=True),
        "channel": sa.Column(sa.String(32), primary_key=True),
        "weekday": sa.Column(sa.Integer, primary_key=True, autoincrement=False),
        **_grid_columns(),
    })


MessageHours = _hour_grid(
    "MessageHours", "analytics_message_hours",
    "Sent messages by day, currency, channel, local weekday and one filter's value; an hour a column.")
#: the hour grid by week (``day`` is the week's Monday, UTC; see :class:`_Weekly`)
MessageHourWeeks = _hour_grid(
    "MessageHourWeeks", "analytics_message_hour_weeks",
    "Sent messages by week (its Monday), currency, channel, local weekday and one filter's value; an hour a column.")
