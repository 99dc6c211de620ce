"""Findings 7 and 8 and two low ones: request bodies are bounded (webhooks before they read), the client behind a
trusted proxy is the one throttled, admin pages carry security headers, and huge numbers in admin URLs are a 404,
not a 500 (issue 15)."""

from __future__ import annotations

import io
import re

import pytest
from werkzeug.test import EnvironBuilder

from app import create_app
from app.web.pay import wrong_submissions
from config import TestingConfig


class Endless(io.RawIOBase):
    """A request body that never ends (a chunked upload with no length), counting what was read of it."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        size = len(buffer)
        buffer[:size] = b"x" * size
        self.read_bytes += size
        return size


def _call(app, environ) -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
    status: list[str] = []
    body = b"".join(app.wsgi_app(environ, lambda s, h, e=None: status.append(s)))
    return int(status[0].split()[0]), body


@pytest.mark.parametrize("path", ["/hooks/whatsapp", "/hooks/nmi", "/hooks/twilio/status"])
def test_a_chunked_webhook_body_with_no_length_is_cut_off_at_the_limit(app, path):
    stream = Endless()
    environ = EnvironBuilder(path=path, method="POST", headers={"Transfer-Encoding": "chunked",
                                                                "Content-Type": "application/json"}).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input"] = stream
    environ["wsgi.input_terminated"] = True  # as a server that de-chunks (the development server does)
    status, _ = _call(app, environ)
    assert status == 413
    assert stream.read_bytes <= app.config["WEBHOOK_MAX_CONTENT_LENGTH"] + 64 * 1024


def test_a_webhook_that_announces_a_huge_body_is_refused_before_reading(app):
    stream = Endless()
    environ = EnvironBuilder(path="/hooks/nmi", method="POST", headers={"Content-Type": "application/json"}
                             ).get_environ()
    environ["CONTENT_LENGTH"] = str(10**9)
    environ["wsgi.input"] = stream
    status, _ = _call(app, environ)
    assert status == 413 and stream.read_bytes == 0


def test_webhooks_have_a_tighter_limit_than_the_rest(app, client):
    too_big = b"{" + b" " * app.config["WEBHOOK_MAX_CONTENT_LENGTH"] + b"}"
    assert client.post("/hooks/nmi", data=too_big, content_type="application/json").status_code == 413


def test_every_request_body_is_bounded(app, client):
    body = "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    assert client.post("/login", data={"email": "a@example.com", "password": body}).status_code == 413


# -- trusted proxies -------------------------------------------------------------------------------------------------
@pytest.fixture
def behind_one_proxy(app, database_url):  # type: ignore[no-untyped-def]
    proxied = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=database_url, TRUSTED_PROXY_HOPS=1)
    wrong_submissions.reset()
    yield proxied
    wrong_submissions.reset()


def test_behind_a_trusted_proxy_one_guesser_does_not_block_every_customer(behind_one_proxy):
    client = behind_one_proxy.test_client()
    guesser = {"X-Forwarded-For": "203.0.113.5"}
    for n in range(20):
        assert client.get(f"/pay/guess{n}", headers=guesser).status_code == 404
    assert client.get("/pay/guess-more", headers=guesser).status_code == 429
    # every request comes from the proxy's address, yet another customer is not blocked
    assert client.get("/pay/someone-else", headers={"X-Forwarded-For": "198.51.100.9"}).status_code == 404


def test_a_client_cannot_choose_its_address_by_adding_hops(behind_one_proxy):
    client = behind_one_proxy.test_client()
    for n in range(20):  # the proxy appends the real address last; what the client wrote before it is ignored
        client.get(f"/pay/guess{n}", headers={"X-Forwarded-For": f"10.0.0.{n}, 203.0.113.5"})
    assert client.get("/pay/x", headers={"X-Forwarded-For": "10.9.9.9, 203.0.113.5"}).status_code == 429


def test_without_a_trusted_proxy_forwarded_headers_are_ignored(app, client):
    wrong_submissions.reset()
    try:
        for n in range(20):  # a guesser naming a new address each time is still one client
            client.get(f"/pay/guess{n}", headers={"X-Forwarded-For": f"10.0.0.{n}"})
        assert client.get("/pay/x", headers={"X-Forwarded-For": "10.9.9.9"}).status_code == 429
    finally:
        wrong_submissions.reset()


def test_the_sign_in_throttle_keys_on_the_client_behind_the_proxy(behind_one_proxy):
    from app.accounts.users import create_user

    with behind_one_proxy.app_context():
        create_user("ops@example.com", "correct horse battery", ["operator"])
    client = behind_one_proxy.test_client()
    for _ in range(behind_one_proxy.config["LOGIN_MAX_FAILURES"]):
        client.post("/login", data={"email": "ops@example.com", "password": "wrong password!"},
                    headers={"X-Forwarded-For": "203.0.113.5"})
    owner = client.post("/login", data={"email": "ops@example.com", "password": "correct horse battery"},
                        headers={"X-Forwarded-For": "198.51.100.9"})
    assert owner.status_code == 302


# -- headers -----------------------------------------------------------------------------------------------------------
def test_admin_pages_send_security_headers(client, auth):
    for response in (client.get("/login"), (auth.login("auditor"), client.get("/admin/"))[1],
                     client.get("/admin/cases/")):
        headers = response.headers
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
    assert client.get("/admin/cases/").headers["Cache-Control"] == "no-store"


# -- numbers in admin URLs ---------------------------------------------------------------------------------------------
def test_huge_numbers_in_admin_urls_are_not_found_not_a_server_error(app, client, auth):
    auth.login("admin")
    big = "9" * 30
    tried = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/admin") or "static" in rule.endpoint:
            continue
        if "<int:" in rule.rule:
            url = re.sub(r"<(?:[^:>]+:)?([^>]+)>", "x", re.sub(r"<int:[^>]+>", big, rule.rule))
        elif rule.endpoint.endswith(("details_view", "edit_view", "index_view")):
            url = re.sub(r"<(?:[^:>]+:)?([^>]+)>", "x", rule.rule) + ("?page=" if "index" in rule.endpoint
                                                                      else "?id=") + big
        else:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(url, method=method)
            assert response.status_code == 404, f"{method} {url} gave {response.status_code}"
            tried += 1
    assert tried > 25


def test_a_chunked_webhook_to_a_real_server_is_refused_once_past_the_limit(app):
    """Over a socket, as the demo serves: a chunked body that goes on past the webhook limit gets 413 and the server
    stops reading it (the client is not made to send it all)."""
    import socket
    from urllib.parse import urlsplit

    from tests.live_server import LiveServer

    limit = app.config["WEBHOOK_MAX_CONTENT_LENGTH"]
    with LiveServer(app) as server:
        parts = urlsplit(server.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as conn:
            conn.sendall(b"POST /hooks/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            chunk = b"x" * 65536
            sent = 0
            answer = b""
            try:
                while sent < 20 * limit and b"\r\n\r\n" not in answer:
                    conn.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                    sent += len(chunk)
                    conn.settimeout(0.001)
                    try:
                        answer += conn.recv(4096)
                    except (TimeoutError, BlockingIOError):
                        pass
                    conn.settimeout(10)
            except (BrokenPipeError, ConnectionResetError):
                pass
            if b"\r\n\r\n" not in answer:
                conn.settimeout(10)
                answer += conn.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    assert sent <= limit + 16 * len(chunk)
