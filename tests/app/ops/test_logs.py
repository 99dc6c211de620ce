"""Logs: with RECOUP_LOG_FORMAT=json every line a process writes is one JSON object naming the request (and the case
or message when known); plain text stays the default; each request gets an id, kept from X-Request-ID only when a
trusted proxy sets it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.ops.logs import log_context

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import logging
from app import create_app
from app.ops.logs import log_context
app = create_app()
client = app.test_client()
answer = client.get("/readyz", headers={"X-Request-ID": "req-from-proxy-42"})
print("status", answer.status_code, answer.headers["X-Request-ID"], flush=True)
with log_context(case_id=17, message_id=99):
    logging.getLogger("recoup.test").info("working on a case")
try:
    raise RuntimeError("boom")
except RuntimeError:
    logging.getLogger("recoup.test").exception("it failed")
"""


def run(env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RECOUP_CONFIG": "default", "DATABASE_URL": "mysql+pymysql://recoup:x@127.0.0.1:1/recoup",
           "RECOUP_TRUSTED_PROXIES": "1", **env_extra}
    if "RECOUP_LOG_FORMAT" not in env_extra:
        env.pop("RECOUP_LOG_FORMAT", None)
    return subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=True)


def test_json_log_lines_name_the_request_the_case_and_the_message():
    done = run({"RECOUP_LOG_FORMAT": "json"})
    assert "status 503 req-from-proxy-42" in done.stdout
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]  # every line is JSON
    assert lines, done.stderr
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line)
        assert line["time"].endswith("+00:00")
    [not_ready] = [line for line in lines if line["logger"] == "app.web.ops"]
    assert not_ready["level"] == "WARNING" and "database: database unreachable" in not_ready["message"]
    assert not_ready["request_id"] == "req-from-proxy-42"
    [health] = [line for line in lines if line["logger"] == "app.ops.health"]
    assert health["request_id"] == "req-from-proxy-42"
    [case_line] = [line for line in lines if line["message"] == "working on a case"]
    assert (case_line["case_id"], case_line["message_id"]) == (17, 99) and "request_id" not in case_line
    [failed] = [line for line in lines if line["message"] == "it failed"]
    assert failed["level"] == "ERROR" and "RuntimeError: boom" in failed["exception"]


def test_plain_text_stays_the_default():
    done = run({})
    assert "working on a case" in done.stderr
    assert not any(line.startswith("{") for line in done.stderr.splitlines())


def test_each_request_gets_an_id_and_an_untrusted_header_is_not_kept(app, client):
    first = client.get("/healthz", headers={"X-Request-ID": "chosen-by-the-client"})
    second = client.get("/healthz")
    ids = [first.headers["X-Request-ID"], second.headers["X-Request-ID"]]
    assert "chosen-by-the-client" not in ids and len(set(ids)) == 2 and all(len(i) == 32 for i in ids)
    app.config["TRUST_REQUEST_ID"] = True  # behind a proxy that sets it
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    odd = "a <b> and " + "x" * 80  # not an id: spaces, markup, too long
    forged = client.get("/healthz", headers={"X-Request-ID": odd}).headers["X-Request-ID"]
    assert forged != odd and len(forged) == 32


def test_log_context_refuses_a_field_it_does_not_know():
    with pytest.raises(ValueError, match="customer_email"):
        with log_context(customer_email="ana@example.com"):
            pass
