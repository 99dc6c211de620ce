import time

import pytest
import requests

from sandbox.registry import load
from sandbox.twilio.server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, TwilioSimulator
from tests.app.channels.receiver import Receiver

AUTH = (DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN)


@pytest.fixture(scope="module")
def hooks():
    with Receiver() as server:
        yield server


@pytest.fixture(scope="module")
def _sim(hooks):
    cls = load("twilio")
    assert cls is TwilioSimulator
    with cls(host="127.0.0.1", port=0, inbound_url=f"{hooks.url}/in", delays=(0.01, 0.01)) as sim:
        yield sim


@pytest.fixture
def sim(_sim, hooks):
    _sim.wait_for_callbacks(2)
    _sim.reset()
    hooks.reset()
    yield _sim


def messages_url(sim):
    return f"{sim.url}/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json"


def post(sim, auth=AUTH, **form):
    return requests.post(messages_url(sim), data=form, auth=auth, timeout=5)


def test_basic_auth_is_required_and_errors_have_twilios_shape(sim):
    response = post(sim, auth=None, To="+13055550142", From="+15550001111", Body="x")
    assert response.status_code == 401
    assert response.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    assert post(sim, auth=(DEFAULT_ACCOUNT_SID, "bad"), To="+1", Body="x").status_code == 401


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"From": "+15550001111", "Body": "x"}, 21604),
        ({"To": "+13055550142", "Body": "x"}, 21603),
        ({"To": "+13055550142", "From": "+15550001111"}, 21602),
        ({"To": "3055550142", "From": "+15550001111", "Body": "x"}, 21211),
        ({"To": "+13055550142", "From": "+15550001111", "Body": "x" * 1601}, 21617),
        (
            {
                "To": "+13055550142",
                "From": "+15550001111",
                "Body": "x",
                "StatusCallback": "https://a_b.test/s",
            },
            21609,
        ),
    ],
)
def test_parameters_are_validated(sim, form, code):
    response = post(sim, **form)
    assert response.status_code == 400 and response.json()["code"] == code


def test_created_message_resource(sim):
    response = post(sim, To="+13055550142", From="+15550001111", Body="€" * 81)
    assert response.status_code == 201
    body = response.json()
    assert body["sid"].startswith("SM") and len(body["sid"]) == 34
    assert body["status"] == "queued" and body["num_segments"] == "2" and body["num_media"] == "0"
    assert body["direction"] == "outbound-api" and body["api_version"] == "2010-04-01"
    assert body["date_created"].endswith("+0000") and body["price"] is None and body["error_code"] is None
    fetched = requests.get(f"{sim.url}{body['uri']}", auth=AUTH, timeout=5).json()
    assert fetched["sid"] == body["sid"]
    listed = requests.get(messages_url(sim), params={"To": "+13055550142"}, auth=AUTH, timeout=5).json()
    assert [m["sid"] for m in listed["messages"]] == [body["sid"]]
    time.sleep(0.1)
    sim.wait_for_callbacks(2)
    assert requests.get(f"{sim.url}{body['uri']}", auth=AUTH, timeout=5).json()["status"] == "delivered"


def test_messaging_service_messages_start_accepted(sim):
    response = post(sim, To="+13055550142", MessagingServiceSid="MG" + "0" * 32, Body="x")
    assert response.json()["status"] == "accepted"
    # as Twilio: no sender yet, so `from` is null (issue 16, point 5); the service picks one before it is sent
    assert response.json()["from"] is None and response.json()["messaging_service_sid"] == "MG" + "0" * 32


def test_control_api_numbers_inbound_references_and_inbox(sim, hooks):
    r = requests.post(
        f"{sim.url}/_control/numbers", json={"number": "+13055550100", "behaviour": "landline"}, timeout=5
    )
    assert r.status_code == 200 and r.json()["behaviours"] == {"+13055550100": "landline"}
    assert post(sim, To="+13055550100", From="+15550001111", Body="x").json()["code"] == 21614
    bad = requests.post(f"{sim.url}/_control/numbers", json={"number": "+1", "behaviour": "sing"}, timeout=5)
    assert bad.status_code == 400

    inbound = requests.post(
        f"{sim.url}/_control/inbound", json={"from": "+13055550142", "body": "STOP"}, timeout=5
    )
    assert inbound.json()["status"] == 200 and inbound.json()["opted_out"] is True
    [webhook] = hooks.received("/in")
    assert webhook.form()["OptOutType"] == "STOP" and webhook.headers["X-Twilio-Signature"]
    assert post(sim, To="+13055550142", From="+15550001111", Body="x").json()["code"] == 21610

    ok = requests.post(
        messages_url(sim),
        data={"To": "+13055550143", "From": "+15550001111", "Body": "hello"},
        headers={"X-Recoup-Reference": "ref-1"},
        auth=AUTH,
        timeout=5,
    )
    assert ok.status_code == 201
    assert requests.get(f"{sim.url}/_control/references", timeout=5).json() == {"ref-1": 1}
    assert requests.get(f"{sim.url}/_control/messages", timeout=5).json()[0]["reference"] == "ref-1"
    assert "hello" in requests.get(f"{sim.url}/inbox/+13055550143", timeout=5).text
    assert "+13055550143" in requests.get(f"{sim.url}/inbox", timeout=5).text


def test_status_callbacks_are_listed(sim, hooks):
    post(sim, To="+13055550142", From="+15550001111", Body="x", StatusCallback=f"{hooks.url}/status")
    hooks.wait_for("/status", 2)
    sim.wait_for_callbacks(2)
    callbacks = requests.get(f"{sim.url}/_control/callbacks", timeout=5).json()
    assert [c["params"]["MessageStatus"] for c in callbacks] == ["sent", "delivered"]
    assert all(c["status"] == 200 for c in callbacks)
