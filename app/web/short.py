"""Short payment links for SMS and WhatsApp: GET /p/<code> records the click and continues to /pay/<token>.

The code stands for one payment link (app.payments.links): whatever that link's state, the customer lands on the same
page its long form gives (the payment page, or the page for a paid, expired or revoked link). An unknown code
gets the page for an unknown link, and counts against the address like a wrong token does.
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, redirect, url_for

from app.outbox.tracking import record_message_event
from app.payments.links import LinkError, resolve_short_code
from app.web.pay import _limited, _refused, brand_context

bp = Blueprint("short", __name__)
bp.context_processor(brand_context)
log = logging.getLogger(__name__)


@bp.get("/p/<code>")
def follow(code: str):  # type: ignore[no-untyped-def]
    limited = _limited()
    if limited is not None:
        return limited
    found = resolve_short_code(code, current_app.config["SECRET_KEY"])
    if found is None:
        return _refused(LinkError("unknown token"))
    if found.message_id is not None:
        # the event names the link, never the code: a code is as good as the link to whoever reads it
        record_message_event(found.message_id, "clicked", {"short_link": found.link_id})
    response = redirect(url_for("pay.page", token=found.token), code=302)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
