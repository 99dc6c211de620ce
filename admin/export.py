"""CSV export of the admin's lists: what a spreadsheet needs, not what a web page shows.

- no HTML: a list's formatters (links, badges) are for the page; a view's own ``column_formatters_export`` wins;
- money as a plain decimal (``249.00``) with the currency in its own column;
- times as ISO 8601 in UTC to the second (``2026-12-06T04:31:22Z``), dates as ISO;
- related rows by their human name (``Ana Pérez <ana@example.com>``), lists joined with ", ";
- a text starting with ``=``, ``+``, ``-`` or ``@`` is prefixed with ``'`` so no spreadsheet runs it as a formula
  (names and descriptions come from outside: a gateway, a customer);
- every export is written to the audit log: who took which list, with which filters.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from flask import Response, request
from markupsafe import Markup
from werkzeug.utils import secure_filename

from admin.i18n import _l
from admin.ui import iso_utc
from app.audit import record
from app.extensions import db
from app.payments.money import minor_to_decimal

_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def text(value: Any) -> str:
    """One cell's text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Markup):
        return value.striptags()
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(text(v) for v in value)
    return str(value)


def safe(cell: str) -> str:
    if cell.startswith(_FORMULA_START) and not _NUMBER.match(cell):
        return "'" + cell
    return cell


def money(model: Any, name: str) -> Decimal | None:
    """``amount`` / ``amount_due`` / ``amount_minor``: the amount as a decimal, when the row has a currency."""
    attribute = name if name.endswith("_minor") else f"{name}_minor"
    if "." in name or not hasattr(type(model), attribute):
        return None
    currency = getattr(model, attribute.removesuffix("_minor") + "_currency", None) or getattr(model, "currency", None)
    minor = getattr(model, attribute)
    if minor is None or not currency:
        return None
    return minor_to_decimal(minor, currency)


def cell(view: Any, model: Any, name: str) -> str:
    own = (type(view).column_formatters_export or {}).get(name)
    if own is not None:
        value = own(view, None, model, name)
    else:
        amount = money(model, name)
        value = amount if amount is not None else view._get_field_value(model, name)
    return safe(text(value))


def columns_with_currency(view: Any, columns: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The export's columns, plus the row's currency when an amount is exported without it."""
    columns = list(columns)
    names = {name for name, _ in columns}
    model = view.model
    has_money = any(hasattr(model, n if n.endswith("_minor") else f"{n}_minor") for n in names if "." not in n)
    if has_money and "currency" not in names and hasattr(model, "currency"):
        columns.append(("currency", _l("Currency")))
    return columns


def file_name(endpoint: str, export_type: str) -> str:
    return f"recoup-{endpoint}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.{export_type}"


def audit(actor: str, table: str) -> None:
    """Written and committed before the rows are read: an export that fails half-way was still taken."""
    query = {k: v for k, v in request.args.items() if k not in ("url",)}
    record(actor, f"{table}.export", table, None, {"query": query})
    db.session.commit()


def table(view: Any, rows: Iterable[Any]) -> list[list[str]]:
    """The header and every row's cells, as text."""
    columns = view._export_columns
    return [[safe(str(label)) for _name, label in columns],
            *([cell(view, row, name) for name, _label in columns] for row in rows)]


def csv_response(cells: list[list[str]], filename: str) -> Response:
    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for row in cells:
            writer.writerow(row)
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()

    return Response(lines(), mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment;filename={secure_filename(filename)}"})
