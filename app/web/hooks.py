"""Inbound provider webhooks. Each verifies its signature over the raw body before anything is stored."""

from __future__ import annotations

import logging

from flask import Blueprint, request

from app.hooks_service import HookRejected, handle_nmi_webhook

bp = Blueprint("hooks", __name__, url_prefix="/hooks")
log = logging.getLogger(__name__)


@bp.post("/nmi")
def nmi():  # type: ignore[no-untyped-def]
    try:
        outcome = handle_nmi_webhook(dict(request.headers), request.get_data(cache=False))
    except HookRejected as exc:
        log.warning("NMI webhook refused: %s", exc)
        return {"error": str(exc)}, exc.status
    return outcome, 200
