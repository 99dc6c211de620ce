"""Inbound provider webhooks. Each verifies its signature over the raw body before anything is stored, stores what
it received and answers; a worker applies it (:mod:`app.inbox`). What they need is imported with this module and
read as a web process starts (:func:`prepare`), not by its first webhooks."""

from __future__ import annotations

import hashlib
import json
import logging

from flask import Blueprint, Flask, Response, current_app, request

from app import inbox
from app.channels.base import Channel, WebhookPayloadError
from app.channels.sms import parse_inbound, parse_status_callback, twiml_response, verify_twilio_signature
from app.channels.whatsapp import parse_webhook, verify_subscription, verify_whatsapp_signature
from app.ingest.quarantine import storable_json
from app.ingest.webhooks import HookRejected, handle_nmi_webhook, prepare_nmi_verifiers
from app.ops.metrics import count_webhook
from app.outbox.delivery import handle_inbound
from app.outbox.senders import channel_secret

bp = Blueprint("hooks", __name__, url_prefix="/hooks")
log = logging.getLogger(__name__)


#: what a refused sender is told, by status: the reason itself goes to the log only (it may name accounts, parse
#: errors or configuration, which a forger must not learn)
_PUBLIC_REASON = {400: "payload not understood", 401: "signature not accepted", 403: "signature not accepted"}


@bp.after_request
def _count(response: Response) -> Response:
    """Every webhook answered, by provider and outcome (app.ops.metrics), refusals and oversized bodies too."""
    provider = request.path.removeprefix("/hooks/").split("/", 1)[0] or "unknown"
    count_webhook(provider if provider in ("nmi", "twilio", "whatsapp") else "unknown", response.status_code)
    return response


def _refuse(why: str, status: int = 401, public: str | None = None, reason: str | None = None):  # type: ignore[no-untyped-def]
    """``reason``: what is wrong with a correctly signed body, in our own words (the sender holds the key)."""
    log.warning("webhook refused at %s (%s): %s", request.path, status, why)
    answer = {"error": public or _PUBLIC_REASON.get(status, "refused")}
    if reason:
        answer["why"] = reason
    return answer, status


@bp.post("/nmi")
def nmi():  # type: ignore[no-untyped-def]
    try:
        outcome = handle_nmi_webhook(dict(request.headers), request.get_data(cache=False))
    except HookRejected as exc:
        return _refuse(exc.detail, exc.status, reason=exc.why)
    return outcome, 200


def _twilio_signed_url() -> str | None:
    """The URL whose signature this request carries (Twilio signs the URL it called: ours as configured publicly,
    or as this request arrived), or None when it carries none we accept."""
    token = channel_secret(current_app._get_current_object(), Channel.SMS, "auth_token", "TWILIO_AUTH_TOKEN")
    if not token:
        return None
    signature = request.headers.get("X-Twilio-Signature")
    public = current_app.config["PUBLIC_BASE_URL"].rstrip("/") + request.full_path.rstrip("?")
    if verify_twilio_signature(token, public, request.form, signature):
        return public
    arrived = request.url  # built only when needed: the public URL is the usual one
    if arrived != public and verify_twilio_signature(token, arrived, request.form, signature):
        return arrived
    return None


@bp.post("/twilio/status")
def twilio_status():  # type: ignore[no-untyped-def]
    """Stored and answered; a worker applies it (app.inbox). Twilio may call again with the same status: one row."""
    url = _twilio_signed_url()
    if url is None:
        return _refuse("bad or missing X-Twilio-Signature", 403)
    try:
        update = parse_status_callback(request.form, url)
    except WebhookPayloadError as exc:
        return _refuse(str(exc), 400)
    inbox.accept("twilio", f"{update.provider_message_id}:{update.status.value}", update.status.value,
                 {"form": request.form.to_dict(), "url": url})  # form decoding leaves no lone surrogate
    return "", 204


@bp.post("/twilio/inbound")
def twilio_inbound():  # type: ignore[no-untyped-def]
    if _twilio_signed_url() is None:
        return _refuse("bad or missing X-Twilio-Signature", 403)
    try:
        message = parse_inbound(request.form)
    except WebhookPayloadError as exc:
        return _refuse(str(exc), 400)
    handle_inbound(message)
    return Response(twiml_response(), mimetype="text/xml")


@bp.get("/whatsapp")
def whatsapp_verify():  # type: ignore[no-untyped-def]
    token = channel_secret(current_app._get_current_object(), Channel.WHATSAPP, "verify_token", "WHATSAPP_VERIFY_TOKEN")
    challenge = verify_subscription(request.args, token) if token else None
    if challenge is None:
        return _refuse("verify token does not match", 403, public="verify token does not match")
    return Response(challenge, mimetype="text/plain")


@bp.post("/whatsapp")
def whatsapp_events():  # type: ignore[no-untyped-def]
    """Stored and answered (Meta re-delivers the same body: one row). Delivery statuses are applied by a worker
    (app.inbox); a customer's message (a STOP) or a template's status is applied before the answer."""
    secret = channel_secret(current_app._get_current_object(), Channel.WHATSAPP, "app_secret", "WHATSAPP_APP_SECRET")
    body = request.get_data(cache=False)
    if not secret or not verify_whatsapp_signature(secret, body, request.headers.get("X-Hub-Signature-256")):
        return _refuse("bad or missing X-Hub-Signature-256", 401)
    try:
        payload = json.loads(body)
        webhook = parse_webhook(payload)
    except WebhookPayloadError as exc:
        return _refuse(str(exc), 400)
    except (ValueError, RecursionError):
        return _refuse("the body is not JSON", 400)
    urgent = bool(webhook.messages or webhook.template_updates)
    inbox.accept("whatsapp", hashlib.sha256(body).hexdigest(), "messages" if urgent else "statuses",
                 storable_json(payload, body), apply_now=urgent)
    return "", 200


def prepare(app: Flask) -> None:
    """Done as a web process starts (gunicorn.conf.py), so that its first webhooks do not wait for it: the channel
    accounts' secrets and NMI's verifiers read and decrypted, the inbox's writer started. A database not reachable
    yet is no reason not to start: the first webhook then reads them."""
    try:
        with app.app_context():
            for channel, name, config_key in ((Channel.SMS, "auth_token", "TWILIO_AUTH_TOKEN"),
                                              (Channel.WHATSAPP, "app_secret", "WHATSAPP_APP_SECRET")):
                channel_secret(app, channel, name, config_key)
            prepare_nmi_verifiers()
            inbox.prepare()
    except Exception:
        log.warning("webhooks not prepared as this process started; its first webhooks will", exc_info=True)
