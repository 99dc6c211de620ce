"""What every request goes through before a view sees it, and what every admin answer carries.

- **Trusted proxies.** ``TRUSTED_PROXY_HOPS`` (``RECOUP_TRUSTED_PROXIES``, default 0) is how many proxies in front of
  Recoup add ``X-Forwarded-For`` and ``X-Forwarded-Proto``. Werkzeug's ``ProxyFix`` then takes the client address
  from exactly that many hops back, so the payment page's throttle and the sign-in throttle key on the real client.
  0 trusts no header: behind a proxy every customer would look like the proxy (and one guesser would block them
  all); trusting more hops than there are would let a client name any address it likes.
- **Request sizes.** ``MAX_CONTENT_LENGTH`` bounds every body (a ``Content-Length`` over it is refused before a byte
  is read; a chunked body with no length is cut off as soon as it passes it), and provider webhooks get a tighter
  ``WEBHOOK_MAX_CONTENT_LENGTH``, set before their views read the raw body to check its signature.
- **Numbers in URLs.** ``<int:...>`` in a route accepts at most 18 digits: a larger number is no row of ours, and
  the database would fail on it (a 500) instead of saying 404.
- **Security headers** on the admin and sign-in pages (:data:`ADMIN_HEADERS`): a Content-Security-Policy that loads
  nothing from elsewhere and lets no other site frame the admin, ``X-Frame-Options``, ``nosniff``, no referrer
  outside Recoup, and no caching of pages that show customers' data.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, abort, request
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

#: the admin's own scripts and styles only (Flask-Admin's templates use inline handlers, hence 'unsafe-inline' for
#: scripts; every value is escaped by Jinja, which is what stops injection); images may be the merchant's logo
ADMIN_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: https:; font-src 'self' data:; connect-src 'self'; frame-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
ADMIN_HEADERS = {
    "Content-Security-Policy": ADMIN_CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
ADMIN_PREFIXES = ("/admin", "/login", "/logout")
MAX_URL_DIGITS = 18  # below 2**63: every id column is a (big) integer


class BoundedIntegerConverter(IntegerConverter):
    """``<int:...>`` that matches at most :data:`MAX_URL_DIGITS` digits (more is a 404, never a database error)."""

    regex = rf"\d{{1,{MAX_URL_DIGITS}}}"


def install(app: Flask) -> None:
    """Called by ``create_app`` before any blueprint is registered (the URL converter must be known by then)."""
    app.url_map.converters["int"] = BoundedIntegerConverter
    hops = int(app.config.get("TRUSTED_PROXY_HOPS") or 0)
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    app.before_request_funcs.setdefault(None, []).insert(0, _limit_webhook_bodies)
    app.before_request_funcs[None].insert(1, _refuse_oversized_ids)
    app.after_request(_admin_headers)


def _limit_webhook_bodies() -> None:
    """A webhook's body, read here once and at most one byte past its limit (the view then reads it from memory):
    more is a 413, said so, rather than a body cut short whose signature fails."""
    from flask import current_app

    if request.path.startswith("/hooks/"):
        limit = int(current_app.config["WEBHOOK_MAX_CONTENT_LENGTH"])
        request.max_content_length = limit + 1  # a longer Content-Length is refused before a byte is read
        if len(request.get_data(cache=True)) > limit:
            abort(413)


def _refuse_oversized_ids() -> Any:
    """Flask-Admin takes row ids, pages and filter values from the query string (``?id=``, ``?page=``): a number no
    column can hold is a 404 (the database would fail on it). Free-text search is left alone."""
    if request.path.startswith("/admin"):
        for name, value in request.args.items(multi=True):
            if name != "search" and value.isascii() and value.isdigit() and len(value) > MAX_URL_DIGITS:
                abort(404)
    return None


def _admin_headers(response: Response) -> Response:
    if request.path.startswith(ADMIN_PREFIXES):
        for name, value in ADMIN_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.path.startswith("/admin") and "/static/" not in request.path \
                and "Cache-Control" not in response.headers:
            response.headers["Cache-Control"] = "no-store"
    else:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response
