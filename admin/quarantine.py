"""Quarantine: gateway records refused at ingest (app.ingest.quarantine), with their reasons. Operators, admins and
auditors read them (auditors with customers' details masked, as everywhere); operators and admins dismiss one once
they have looked at it (audited). Nothing here changes a record or lets one in: a record the merchant corrects at
the gateway comes in with the next fetch."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from flask import flash, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_babel import gettext as _
from flask_login import current_user

from admin.security import RoleGuard, personal_data
from app.accounts.pii import Mask
from app.extensions import db
from app.ingest.quarantine import dismiss as dismiss_record
from app.ingest.quarantine import list_quarantined
from app.models import GatewayAccount

#: fields of a gateway's record (NMI's names, flat or nested in a webhook) that hold a customer's details, by kind
_PERSONAL = {
    **dict.fromkeys(("first_name", "last_name", "shipping_first_name", "shipping_last_name", "check_name"), "name"),
    **dict.fromkeys(("email", "shipping_email"), "email"),
    **dict.fromkeys(("phone", "cell_phone", "fax", "shipping_phone"), "phone"),
    **dict.fromkeys(("address_1", "address_2", "city", "company", "shipping_address_1", "shipping_address_2",
                     "shipping_city", "shipping_company"), "place"),
    **dict.fromkeys(("postal_code", "shipping_postal_code"), "postal"),
    "ip_address": "ip",
}
#: how much of a record the page shows (the whole of it is in the database)
_SHOWN_CHARS = 6000


def shown_record(mask: Mask, raw: Any) -> Any:
    """A record as this reader may see it: whole for operators and admins; else its customer fields masked."""
    if mask.full:
        return raw

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: mask.value(_PERSONAL[key], item) if key in _PERSONAL and isinstance(item, str)
                    else walk(item) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return mask.record(walk(raw))


class QuarantineView(RoleGuard, BaseView):
    read_roles = ("admin", "operator", "auditor")
    write_roles = ("operator", "admin")

    @expose("/")
    def index(self) -> Any:
        dismissed = request.args.get("show") == "dismissed"
        listing = list_quarantined(dismissed=dismissed, page=request.args.get("page", 1, type=int))
        mask = personal_data()
        ids = {row.gateway_account_id for row in listing.rows}
        accounts: dict[int, str] = {}
        if ids:
            for account_id, name in db.session.execute(sa.select(GatewayAccount.id, GatewayAccount.name)
                                                       .where(GatewayAccount.id.in_(ids))):
                accounts[account_id] = name
        items = [{
            "row": row,
            "account": accounts.get(row.gateway_account_id, f"#{row.gateway_account_id}"),
            "reasons": [(r.get("field", "?"), mask.text(r.get("problem", ""))) for r in row.reasons or []],
            "record": _record_text(shown_record(mask, row.raw or {})),
        } for row in listing.rows]
        return self.render("admin/quarantine/index.html", items=items, listing=listing, dismissed=dismissed,
                           can_change=self.can_write)

    @expose("/<int:record_id>/dismiss", methods=["POST"])
    def dismiss(self, record_id: int) -> Any:
        if dismiss_record(record_id, current_user.email) is None:
            flash(_("Record #%(id)d is not waiting in quarantine (it was dismissed already, or it is not there); "
                    "nothing was changed.", id=record_id), "warning")
        else:
            flash(_("Record #%(id)d is dismissed. It opens nothing; if the gateway sends it again changed, it is "
                    "shown here again.", id=record_id), "success")
        return redirect(url_for(".index"))


def _record_text(record: Any) -> str:
    text = json.dumps(record, ensure_ascii=False, indent=1, sort_keys=True, default=str)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "\n…"
