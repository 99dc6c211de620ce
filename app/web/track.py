"""Email open pixel and click redirects: /t/o/<token>.gif, /t/c/<token>."""

from __future__ import annotations

import base64
import logging

from flask import Blueprint, abort, current_app, redirect

from app.outbox.tracking import record_message_event
from app.payments.links import LinkError, read_open_pixel_token, read_tracking_token, read_unsubscribe_token

bp = Blueprint("track", __name__, url_prefix="/t")
log = logging.getLogger(__name__)
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


@bp.get("/o/<token>.gif")
def open_pixel(token: str):  # type: ignore[no-untyped-def]
    try:
        message_id = read_open_pixel_token(current_app.config["SECRET_KEY"], token)
        record_message_event(message_id, "opened")
    except LinkError as exc:
        log.info("open pixel with a bad token: %s", exc.reason)
    # Always the pixel: a broken image tells a mail client (and a prober) nothing useful.
    return PIXEL, 200, {"Content-Type": "image/gif", "Cache-Control": "no-store, private"}


@bp.get("/c/<token>")
def click(token: str):  # type: ignore[no-untyped-def]
    try:
        message_id, url = read_tracking_token(current_app.config["SECRET_KEY"], token)
    except LinkError:
        abort(404)
    if not url or not url.startswith(("https://", "http://")):
        abort(404)
    record_message_event(message_id, "clicked", {"url": url})
    return redirect(url, code=302)


@bp.route("/u/<token>", methods=["GET", "POST"])
def unsubscribe(token: str):  # type: ignore[no-untyped-def]
    """RFC 8058 one-click unsubscribe (POST from the mail client), and the same from a link (GET shows a button)."""
    from flask import render_template_string, request

    from app.messages.merchant import merchant_profile
    from app.outbox.delivery import unsubscribe_email

    try:
        message_id = read_unsubscribe_token(current_app.config["SECRET_KEY"], token)
    except LinkError:
        abort(404)
    if request.method == "POST":
        unsubscribe_email(message_id)
        return render_template_string(_UNSUBSCRIBED, merchant=merchant_profile().name)
    return render_template_string(_CONFIRM, merchant=merchant_profile().name)


_CONFIRM = """<!doctype html><html lang="en"><meta charset="utf-8">
<meta name="viewport" content="width=device-width">
<title>Unsubscribe</title><body style="font-family:system-ui;max-width:480px;margin:2rem auto;padding:0 1rem">
<h1>Stop payment reminders by email?</h1><p>{{ merchant }} will stop sending you payment reminders by email.</p>
<form method="post"><button style="font-size:1.1rem;padding:.8rem 1.2rem">Unsubscribe</button></form></body></html>"""
_UNSUBSCRIBED = """<!doctype html><html lang="en"><meta charset="utf-8">
<meta name="viewport" content="width=device-width">
<title>Unsubscribed</title><body style="font-family:system-ui;max-width:480px;margin:2rem auto;padding:0 1rem">
<h1>You are unsubscribed</h1><p>{{ merchant }} will not email you payment reminders any more.</p></body></html>"""
