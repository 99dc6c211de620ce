"""The payment page a customer reaches from a message: /pay/<token>."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, render_template

from app.links import LinkError, open_payment_link
from app.money import format_minor

bp = Blueprint("pay", __name__, url_prefix="/pay")
log = logging.getLogger(__name__)


@bp.get("/<token>")
def page(token: str):  # type: ignore[no-untyped-def]
    try:
        opened = open_payment_link(token, current_app.config["SECRET_KEY"])
    except LinkError as exc:
        # One page for every reason: a stranger learns nothing about the case or whether it exists.
        log.info("payment link refused: %s", exc.reason)
        return render_template("pay/invalid.html", merchant=current_app.config["MERCHANT_NAME"]), 404
    case = opened.case
    locale = (case.customer.locale if case.customer else None) or "en_US"
    return render_template(
        "pay/page.html",
        merchant=current_app.config["MERCHANT_NAME"],
        amount=format_minor(case.amount_due_minor, case.currency, locale),
        case=case,
    )
