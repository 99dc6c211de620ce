"""Operators' endpoints: ``/healthz``, ``/readyz``, ``/metrics``; and the request id every request logs under.

``/healthz`` and ``/readyz`` need no sign-in and show no customer data (app.ops.health). ``/metrics`` is for the
monitoring system only: with ``RECOUP_METRICS_TOKEN`` set, a request must carry ``Authorization: Bearer <token>``
(from anywhere); without a token, only clients whose address is in ``RECOUP_METRICS_ALLOW`` (networks, default
loopback only) get an answer. The client address is the one hardening's trusted-proxy handling settled on.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import uuid
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request

from app.ops import health, logs, metrics

bp = Blueprint("ops", __name__)
log = logging.getLogger(__name__)

#: what a request id taken from X-Request-ID may look like (anything else is replaced by a new one)
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


def install(app: Flask) -> None:
    """Every request gets an id (a trusted proxy's ``X-Request-ID``, else a new one), logged with each line it
    writes and returned in the answer's ``X-Request-ID``."""
    app.before_request_funcs.setdefault(None, []).insert(0, _start_request)
    app.after_request(_answer_request_id)
    app.teardown_request(_end_request)


def _start_request() -> None:
    given = request.headers.get("X-Request-ID", "")
    trusted = bool(current_app.config.get("TRUST_REQUEST_ID"))
    g.request_id = given if trusted and REQUEST_ID.match(given) else uuid.uuid4().hex
    g.request_log_tokens = logs.bind(request_id=g.request_id)


def _answer_request_id(response: Response) -> Response:
    if g.get("request_id"):
        response.headers["X-Request-ID"] = g.request_id
    return response


def _end_request(_error: BaseException | None) -> None:
    tokens = g.pop("request_log_tokens", None)
    if tokens:
        try:
            logs.unbind(tokens)
        except ValueError:  # reset from another context (a streamed response): the context dies with it anyway
            pass


@bp.get("/healthz")
def healthz() -> Any:
    return health.liveness()


@bp.get("/readyz")
def readyz() -> Any:
    from app.clock import business_now
    from app.extensions import db
    from app.queue import QUEUE_NAMES

    report = health.readiness(
        db.engine, current_app.config.get("REDIS_URL"), QUEUE_NAMES, business_now=business_now,
        max_lag_seconds=float(current_app.config["READY_MAX_LAG_SECONDS"]))
    if not report.ready:
        log.warning("not ready: %s", "; ".join(f"{c.name}: {c.detail}" for c in report.checks if c.status == "fail"))
    response = current_app.json.response(report.as_dict())
    response.status_code = 200 if report.ready else 503
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/metrics")
def prometheus_metrics() -> Any:
    from app.clock import business_now
    from app.extensions import db

    refused = _metrics_refused()
    if refused is not None:
        return refused
    body = metrics.exposition(metrics.DatabaseCollector(db.engine, business_now), metrics.multiprocess_dir())
    return Response(body, content_type=metrics.CONTENT_TYPE, headers={"Cache-Control": "no-store"})


def _metrics_refused() -> Response | None:
    token = current_app.config.get("METRICS_TOKEN")
    if token:
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), str(token).encode()):
            return None
        log.warning("metrics refused: no valid bearer token")
        return Response("a bearer token is required\n", 401, {"WWW-Authenticate": 'Bearer realm="metrics"'},
                        content_type="text/plain")
    if _address_allowed(request.remote_addr, current_app.config.get("METRICS_ALLOW") or ()):
        return None
    log.warning("metrics refused: %s is not in RECOUP_METRICS_ALLOW", request.remote_addr)
    return Response("metrics are served to the monitoring network only\n", 403, content_type="text/plain")


def _address_allowed(address: str | None, networks: Any) -> bool:
    try:
        client = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if getattr(client, "ipv4_mapped", None) is not None:  # ::ffff:127.0.0.1 on a dual-stack socket
        client = client.ipv4_mapped  # type: ignore[union-attr]
    for network in networks:
        try:
            if client in ipaddress.ip_network(network, strict=False):
                return True
        except ValueError:
            log.error("RECOUP_METRICS_ALLOW holds %r, which is not a network", network)
    return False
