"""app.channels.http.post against session.post: the same request on the wire, the same answer, the same errors."""

import json
import socket

import pytest
import requests
from werkzeug.wrappers import Response

from app.channels.http import post, provider_session
from app.channels.sms import _request_never_sent
from sandbox.harness import SimulatorServer

#: what requests itself may word differently between the two (its version is in the User-Agent either way)
SAME = ("Content-Type", "Content-Length", "Authorization", "User-Agent", "Accept", "Accept-Encoding", "X-Extra")


class Api(SimulatorServer):
    name = "api"

    def handle(self, request):
        body = json.dumps({"id": "M1", "length": len(request.get_data())})
        return Response(body, status=201, content_type="application/json")


@pytest.fixture
def api():
    with Api() as sim:
        yield sim


def _session(url, auth=None, bearer=None):
    session = provider_session(url)
    session.auth = auth
    if bearer:
        session.headers["Authorization"] = f"Bearer {bearer}"
    return session


@pytest.mark.parametrize("how", ["form", "json"])
def test_the_request_on_the_wire_is_the_one_session_post_sends(api, how):
    if how == "form":  # Twilio's way: basic authentication
        session = _session(api.url, auth=("AC1", "tøken"))
    else:  # Meta's: a bearer token among the session's headers
        session = _session(api.url, bearer="tok")
    url = f"{api.url}/v1/messages"
    form = {"To": "+15551234567", "Body": "Pay now: 50 € & more ✓", "Skipped": None, "From": ""}
    payload = {"to": "+15551234567", "text": {"body": "héllo"}, "n": [1, 2.5]}
    kwargs = {"data": form} if how == "form" else {"json": payload}
    expected = session.post(url, headers={"X-Extra": "1"}, timeout=(5, 5), **kwargs)
    ours = post(session, url, headers={"X-Extra": "1"}, timeout=(5, 5),
                **({"data": form} if how == "form" else {"json_body": payload}))
    theirs, mine = api.received("/v1/messages")
    assert mine.body == theirs.body and mine.method == theirs.method == "POST"
    for name in SAME:
        assert mine.headers.get(name) == theirs.headers.get(name), name
    assert ours.status_code == expected.status_code == 201
    assert ours.json() == expected.json() and ours.headers["Content-Type"] == "application/json"


def test_sends_on_the_sessions_kept_connection(api):
    session = _session(api.url)
    for _ in range(3):
        post(session, f"{api.url}/v1/messages", data={"a": "b"}, timeout=(5, 5))
    assert len({seen.remote for seen in api.received("/v1/messages")}) == 1


def test_an_api_not_listening_is_a_connection_error_that_says_nothing_was_sent():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the POST: nothing listens there
    with pytest.raises(requests.ConnectionError) as raised:
        post(_session(f"http://127.0.0.1:{port}"), f"http://127.0.0.1:{port}/v1/messages", data={"a": "b"},
             timeout=(1, 1))
    assert _request_never_sent(raised.value)


def test_a_slow_answer_is_a_read_timeout_and_a_dropped_connection_a_connection_error(api):
    session = _session(api.url)
    api.inject("timeout", count=1, seconds=1.0)
    with pytest.raises(requests.ReadTimeout):
        post(session, f"{api.url}/v1/messages", data={"a": "b"}, timeout=(1, 0.2))
    api.inject("reset", count=1)
    with pytest.raises(requests.ConnectionError) as raised:
        post(session, f"{api.url}/v1/messages", data={"a": "b"}, timeout=(1, 1))
    assert not _request_never_sent(raised.value)  # it was sent: the provider may hold it
