"""The recovery dashboard (the admin's home page): what the filters in the query string ask for, read from the
analytics rollups (app.analytics.report), shaped for the page and its charts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask import request
from flask_babel import get_locale, gettext

from admin.i18n import _l
from app.analytics.facts import attribution_window
from app.analytics.report import Filters, best_times, breakdown, cohorts, costs, funnel, holdout_lift, kpis
from app.extensions import db
from app.models.analytics import ALL, CASE_CUBE_DIMENSIONS, CaseWeek, MessageWeek
from app.payments.money import format_minor

#: the filters the page offers, in order, and where their choices come from
FILTERS = ("gateway", "currency", "decline_reason", "value_band", "first_time", "product_type", "vip", "language",
           "channel", "policy_version_id")
#: the breakdowns a user can pick, with their labels
BREAKDOWNS = {
    "decline_reason": _l("Decline reason"), "decline_code": _l("Decline code"), "value_band": _l("Value band"),
    "first_time": _l("First or repeat"), "product_type": _l("Product type"), "vip": _l("VIP"),
    "language": _l("Language"), "paid_with": _l("Paid with"),
    "gateway": _l("Gateway"), "policy_version_id": _l("Policy version"), "holdout": _l("Holdout"),
    "channel": _l("Channel"), "template": _l("Template"), "variant": _l("Variant"),
    "local_hour": _l("Customer's local hour"), "weekday": _l("Customer's weekday"),
}
FILTER_LABELS = {"gateway": _l("Gateway"), "currency": _l("Currency"), "decline_reason": _l("Decline reason"),
                 "value_band": _l("Value band"),
                 "first_time": _l("First or repeat"), "product_type": _l("Product type"), "vip": _l("VIP"),
                 "language": _l("Language"), "channel": _l("Channel"), "policy_version_id": _l("Policy version")}
DEFAULT_DAYS = 90
TILED_CURRENCIES = 2


class FilterError(ValueError):
    """A filter the page cannot use; says which and why."""


@dataclass(frozen=True)
class Page:
    filters: Filters
    chosen: dict[str, str]
    by: str
    kpis: list[Any]
    cohorts: list[Any]
    funnel: list[Any]
    rows: list[Any]
    choices: dict[str, list[str]]
    errors: list[str]
    counted_at: datetime | None = None
    best: list[Any] = field(default_factory=list)
    costs: Any = None
    #: the attribution window (hours): a recovery with no touch that recent before it is organic
    window_hours: int = 72
    #: recovery with Recoup against the holdout, per currency
    lifts: list[Any] = field(default_factory=list)
    #: whether the active policy's holdout keeps its card retries (``holdout 5% with retries``); None: no active
    #: policy, or one without a holdout
    holdout_keeps_retries: bool | None = None

    @property
    def empty(self) -> bool:
        return not self.kpis

    @property
    def tiles(self) -> list[Any]:
        """The currencies shown as tiles (the most failed first); the others go in a table below them."""
        return self.kpis[:TILED_CURRENCIES]

    @property
    def other_currencies(self) -> list[Any]:
        return self.kpis[TILED_CURRENCIES:]


def _day(name: str, errors: list[str]) -> date | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors.append(gettext("%(field)s: “%(value)s” is not a date (YYYY-MM-DD)", field=name, value=value[:40]))
        return None


def _value(name: str, raw: str) -> Any:
    if name == "vip":
        return raw == "yes"
    if name == "policy_version_id":
        return int(raw) if raw.isdigit() else None
    return raw


def choices() -> dict[str, list[str]]:
    """Every value each filter can take, from the weekly cubes (a short list per dimension, read from its own rows
    whatever the volume)."""
    from app.analytics.cubes import decode

    cases, messages = CaseWeek.__table__, MessageWeek.__table__
    found: dict[str, list[str]] = {}
    for name in FILTERS:
        if name in ("currency", "channel"):
            table = cases if name == "currency" else messages
            query = sa.select(table.c[name]).distinct().where(table.c.dim == ALL, table.c[name] != "")
            values = list(db.session.scalars(query.limit(100)))
        else:
            table = cases if name in CASE_CUBE_DIMENSIONS else messages
            raw = db.session.scalars(sa.select(table.c.value).distinct().where(table.c.dim == name).limit(100))
            values = [v for v in (decode(r) for r in raw) if v is not None]
        if name == "vip":
            found[name] = ["yes", "no"] if values else []
        else:
            found[name] = sorted({str(v) for v in values})
    return found


def build(today: date) -> Page:
    errors: list[str] = []
    start, end = _day("start", errors), _day("end", errors)
    if start is None and end is None and not request.args.get("all"):
        start = today - timedelta(days=DEFAULT_DAYS - 1)
    if start and end and start > end:
        errors.append(gettext("The period started after it ended: the two dates were swapped."))
        start, end = end, start
    chosen = {name: request.args.get(name, "") for name in FILTERS if request.args.get(name)}
    where = {name: _value(name, raw) for name, raw in chosen.items()}
    by = request.args.get("by") or "decline_reason"
    if by not in BREAKDOWNS:
        errors.append(gettext("“%(value)s” is not a breakdown: showing decline reasons.", value=by[:40]))
        by = "decline_reason"
    filters = Filters(start=start, end=end, where=where)
    return Page(filters=filters, chosen={**chosen, **({"start": start.isoformat()} if start else {}),
                                         **({"end": end.isoformat()} if end else {})},
                by=by, kpis=kpis(filters), cohorts=cohorts(filters), funnel=funnel(filters),
                rows=breakdown(by, filters), choices=choices(), errors=errors, counted_at=counted_at(),
                best=best_times(filters), costs=costs(filters),
                window_hours=int(attribution_window().total_seconds() // 3600), lifts=holdout_lift(filters),
                holdout_keeps_retries=holdout_keeps_retries())


def holdout_keeps_retries() -> bool | None:
    """Whether the active policy's holdout still gets its card retries (None: no active policy, or no holdout)."""
    import dsl
    from app.recovery.policies import active_version, compiled

    version = active_version()
    if version is None:
        return None
    try:
        policy = compiled(version)
    except dsl.PolicyError:  # the page still shows what it counted; planning reports the policy itself
        return None
    return policy.holdout_keeps_retries if policy.holdout_percent > 0 else None


def counted_at() -> datetime | None:
    """Up to when the rollups have counted (the analytics job's last run)."""
    from app.analytics.rollups import CURSOR_KEY
    from app.models import Setting

    cursor = db.session.get(Setting, CURSOR_KEY)
    if cursor is None or not cursor.value:
        return None
    try:
        return datetime.fromisoformat(str(cursor.value))
    except ValueError:
        return None


def money(amount: int, currency: str) -> str:
    return format_minor(amount, currency, str(get_locale() or "en"))


def amount(value: Decimal, currency: str) -> str:
    """A decimal amount rounded as the currency is (a tile's net)."""
    from babel.numbers import format_currency

    return format_currency(value, currency, locale=str(get_locale() or "en"))


def cash(amount: Decimal, currency: str) -> str:
    """A decimal amount (a cost: it may have more decimals than the currency, and is shown to four)."""
    from babel.numbers import format_currency

    return format_currency(amount, currency, format="¤#,##0.00##", locale=str(get_locale() or "en"),
                           currency_digits=False)


def within(hours: int | None) -> str:
    """A recovery-time bucket's edge as people say it: "6 hours", "3 days"; None is past the last edge."""
    from babel.dates import format_timedelta

    if hours is None:
        return gettext("more than 30 days")
    return str(format_timedelta(timedelta(hours=hours), threshold=1.0, locale=str(get_locale() or "en")))


def count(n: int) -> str:
    """A count as the reader writes numbers (14,793; 14.793 in Spanish)."""
    from babel.numbers import format_decimal

    return format_decimal(n, locale=str(get_locale() or "en"))


def points(fraction: float) -> str:
    """A difference of rates in percentage points, signed: +4.2, −1.0."""
    from babel.numbers import format_decimal

    return format_decimal(round(fraction * 100, 1), format="+#,##0.0;−#,##0.0", locale=str(get_locale() or "en"))


def percent(rate: Any) -> str:
    if rate is None:
        return "–"
    from babel.numbers import format_percent

    return format_percent(rate, format="#,##0.0%", locale=str(get_locale() or "en"))


def heatmap(page: Page) -> dict[str, Any]:
    """The best-times grid: the hours that have first touches, a row per weekday; each cell's share of the best
    rate (for its shade) or None when it is too thin to rank."""
    hours = sorted({c.hour for c in page.best})
    grid = {(c.weekday, c.hour): c for c in page.best}
    top = max((float(c.rate) for c in page.best if not c.thin and c.rate is not None), default=0.0)
    shade = {key: (float(c.rate) / top if top and not c.thin and c.rate is not None else None)
             for key, c in grid.items()}
    return {"hours": hours, "grid": grid, "shade": shade}


def weekday_name(weekday: int) -> str:
    from babel.dates import get_day_names

    return str(get_day_names("wide", locale=str(get_locale() or "en"))[weekday]).capitalize()


def chart_data(page: Page) -> dict[str, Any]:
    """What the charts draw (the tables beside them show the same numbers)."""
    weeks = sorted({c.week for c in page.cohorts})
    # the chart draws one currency: the one with the most failures (the first tile); the table has them all
    currencies = [k.currency for k in page.kpis]
    cohort = {currency: {"weeks": [w.isoformat() for w in weeks],
                         "recovered": [0] * len(weeks), "elsewhere": [0] * len(weeks), "open": [0] * len(weeks),
                         "lost": [0] * len(weeks)} for currency in currencies}
    for c in page.cohorts:
        if c.currency not in cohort:
            continue
        i = weeks.index(c.week)
        cohort[c.currency]["recovered"][i] += c.recovered_n
        cohort[c.currency]["elsewhere"][i] += c.elsewhere_n
        cohort[c.currency]["open"][i] += c.open_n
        cohort[c.currency]["lost"][i] += c.lost_n
    channels: dict[str, list[int]] = {}
    for r in page.funnel:
        totals = channels.setdefault(str(r.value), [0, 0, 0, 0, 0])
        for i, v in enumerate((r.sent_n, r.delivered_n, r.read_n, r.clicked_n, r.paid_n)):
            totals[i] += v
    return {"cohorts": cohort, "currencies": currencies, "funnel": channels}


# -- exports: the same numbers as the page ---------------------------------------------------------------------------
EXPORTS = ("kpis", "cohorts", "funnel", "breakdown", "best_times")


def export_table(kind: str, page: Page) -> list[list[Any]]:
    """The header and rows of one of the page's tables: counts as integers, money as decimals with its currency,
    rates as fractions (0.3125)."""
    from app.payments.money import minor_to_decimal

    def cash(minor: int, currency: str) -> Any:
        return minor_to_decimal(minor, currency) if currency and currency != "?" else minor

    if kind == "kpis":
        return [["currency", "failed", "failed_amount", "recovered", "recovered_amount", "recovery_rate_count",
                 "recovery_rate_amount", "paid_elsewhere", "paid_elsewhere_amount", "still_open", "organic",
                 "organic_amount"],
                *[[k.currency, k.failed_n, cash(k.failed_minor, k.currency), k.recovered_n,
                   cash(k.recovered_minor, k.currency), k.rate_count, k.rate_amount, k.elsewhere_n,
                   cash(k.elsewhere_minor, k.currency), k.open_n, k.organic_n, cash(k.organic_minor, k.currency)]
                  for k in page.kpis]]
    if kind == "cohorts":
        return [["week_of", "currency", "failed", "recovered", "paid_elsewhere", "still_open", "lost",
                 "recovery_rate"],
                *[[c.week, c.currency, c.failed_n, c.recovered_n, c.elsewhere_n, c.open_n, c.lost_n, c.rate_count]
                  for c in page.cohorts]]
    if kind == "funnel" or (kind == "breakdown" and page.rows and not hasattr(page.rows[0], "failed_n")):
        rows = page.funnel if kind == "funnel" else page.rows
        name = "channel" if kind == "funnel" else page.by
        return [[name, "currency", "sent", "delivered", "read", "clicked", "opted_out", "opt_out_rate",
                 "paid_last_touch", "paid_last_touch_amount", "paid_any_touch", "paid_any_touch_amount"],
                *[[r.value, r.currency, r.sent_n, r.delivered_n, r.read_n, r.clicked_n, r.optout_n, r.optout_rate,
                   r.paid_n, cash(r.paid_minor, r.currency), r.any_n, cash(r.any_minor, r.currency)] for r in rows]]
    if kind == "breakdown":
        return [[page.by, "currency", "failed", "failed_amount", "recovered", "recovered_amount", "paid_elsewhere",
                 "still_open", "recovery_rate_count", "recovery_rate_amount"],
                *[[r.value, r.currency, r.failed_n, cash(r.failed_minor, r.currency), r.recovered_n,
                   cash(r.recovered_minor, r.currency), r.elsewhere_n, r.open_n, r.rate_count, r.rate_amount]
                  for r in page.rows]]
    if kind == "best_times":
        return [["weekday", "local_hour", "first_messages", "recovered_within_72h", "rate", "interval_low",
                 "interval_high", "too_few_to_rank"],
                *[[c.weekday, c.hour, c.first_n, c.won_n, c.rate, c.low, c.high, c.thin] for c in page.best]]
    raise ValueError(f"unknown export {kind!r}")


def xlsx_bytes(table: list[list[Any]], title: str) -> bytes:
    """A one-sheet workbook (openpyxl, write-only): numbers stay numbers; a text that a spreadsheet would run as a
    formula is written as text."""
    import io

    from openpyxl import Workbook

    from admin.export import safe, text

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=title[:31])
    for row in table:
        sheet.append([value if isinstance(value, int | float | Decimal) and not isinstance(value, bool)
                      else safe(text(value)) for value in row])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
