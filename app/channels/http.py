"""HTTP to the providers' APIs: one kept-alive ``requests`` session per provider, and the send's POST.

A send is one POST on a hot path (a dispatching worker makes hundreds a second), so :func:`post` prepares it
directly and hands it to the session's own adapter: the same kept connections, headers, authentication, proxies,
TLS settings, exceptions and :class:`requests.Response` as ``session.post``, for about a third less of its CPU.
``Session.request`` merges the session's settings with the call's on every call, and requests 2.34 checks typing
Protocols with ``isinstance`` about ten times a call, which Python 3.11 does slowly. Everything else (lookups,
template management) goes through the session as usual.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import requests
from requests.auth import HTTPBasicAuth
from requests.hooks import default_hooks
from requests.structures import CaseInsensitiveDict

#: connections kept open per provider host: at least as many as a worker's sends in flight (DISPATCH_CONCURRENCY,
#: default 32); requests keeps 10, and every connection over that was closed after its answer and opened again
#: for the next send (a TCP, and with HTTPS a TLS, handshake each)
KEPT_CONNECTIONS = 128


def provider_session(url: str) -> requests.Session:
    """A ``requests`` session for one provider's API at ``url``. The environment's proxy settings (``HTTPS_PROXY``,
    ``NO_PROXY``, ...) and CA bundle are read once, here: with ``trust_env`` on, requests re-reads the whole
    environment on every request, which costs more CPU than the rest of a send. Up to :data:`KEPT_CONNECTIONS`
    connections are kept alive."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=KEPT_CONNECTIONS)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    proxies = requests.utils.get_environ_proxies(url)  # empty when NO_PROXY covers the host
    session.trust_env = False
    session.proxies.update(proxies)
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    return session


def post(session: requests.Session, url: str, *, data: Mapping[str, str | None] | None = None, json_body: Any = None,
         headers: Mapping[str, str] | None = None, timeout: tuple[float, float]) -> requests.Response:
    """What ``session.post(url, data=data or json=json_body, headers=headers, timeout=timeout)`` does for a
    provider's API, read in full, with the same exceptions. ``url`` is used as given (a provider's API URL, built
    from settings, is in its final form already). No cookies are sent or kept, and no redirect is followed: the
    providers' APIs set none and answer a POST where it was made."""
    if json_body is not None:
        body = json.dumps(json_body, allow_nan=False).encode()
        content_type = "application/json"
    else:  # as requests encodes a form: UTF-8, spaces as +, fields without a value left out
        body = urlencode([(name, value) for name, value in (data or {}).items() if value is not None]).encode()
        content_type = "application/x-www-form-urlencoded"
    merged: CaseInsensitiveDict[str] = CaseInsensitiveDict(session.headers)
    merged.update(headers or {})
    merged["Content-Type"] = content_type
    merged["Content-Length"] = str(len(body))
    request = requests.PreparedRequest()
    request.method, request.url, request.headers, request.body = "POST", url, merged, body
    request.hooks = default_hooks()
    if session.auth is not None:
        auth = session.auth if callable(session.auth) else HTTPBasicAuth(*session.auth)
        request = auth(request)
    response = session.get_adapter(url).send(request, stream=False, timeout=timeout, verify=session.verify,
                                             cert=session.cert, proxies=session.proxies)
    response.content  # noqa: B018  read in full, as Session.send does: the connection goes back to the pool
    return response
