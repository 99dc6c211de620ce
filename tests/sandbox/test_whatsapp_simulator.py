import pytest
import requests

from sandbox.registry import load
from sandbox.whatsapp.server import DEFAULT_PHONE_NUMBER_ID, DEFAULT_TOKEN, DEFAULT_WABA_ID, WhatsAppSimulator
from tests.app.channels.receiver import Receiver

HEADERS = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}


@pytest.fixture(scope="module")
def hooks():
    with Receiver() as server:
        yield server


@pytest.fixture(scope="module")
def _sim(hooks):
    cls = load("whatsapp")
    assert cls is WhatsAppSimulator
    with cls(host="127.0.0.1", port=0, webhook_url=f"{hooks.url}/wa", delays=(0.01, 0.01, 0.01)) as sim:
        yield sim


@pytest.fixture
def sim(_sim, hooks):
    _sim.wait_for_webhooks(2)
    _sim.reset()
    hooks.reset()
    yield _sim


def send(sim, body, headers=HEADERS, phone_id=DEFAULT_PHONE_NUMBER_ID, version="v21.0"):
    return requests.post(f"{sim.url}/{version}/{phone_id}/messages", json=body, headers=headers, timeout=5)


def test_bearer_token_is_checked_with_a_graph_error(sim):
    response = send(sim, {}, headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == 190 and error["type"] == "OAuthException" and error["fbtrace_id"]


def test_unknown_phone_number_id_and_missing_product(sim):
    assert send(sim, {}, phone_id="999").json()["error"]["code"] == 100
    assert "messaging_product" in send(sim, {"to": "1"}).json()["error"]["message"]


def test_templates_through_the_control_api_and_the_send_response(sim):
    created = requests.post(
        f"{sim.url}/_control/templates",
        json={"name": "reminder", "language": "pt_BR", "body": "Olá {{1}}, pague {{2}}"},
        timeout=5,
    )
    assert created.status_code == 201 and created.json()["status"] == "APPROVED"
    body = {
        "messaging_product": "whatsapp",
        "to": "+55 11 91234-5678",
        "type": "template",
        "biz_opaque_callback_data": "ref-9",
        "template": {
            "name": "reminder",
            "language": {"code": "pt_BR"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Ana"},
                        {
                            "type": "currency",
                            "currency": {"fallback_value": "R$ 49,00", "code": "BRL", "amount_1000": 49000},
                        },
                    ],
                }
            ],
        },
    }
    response = send(sim, body, version="v19.0")
    assert response.status_code == 200
    data = response.json()
    assert data["messaging_product"] == "whatsapp"
    assert data["contacts"] == [{"input": "+55 11 91234-5678", "wa_id": "5511912345678"}]
    assert data["messages"][0]["id"].startswith("wamid.")
    assert requests.get(f"{sim.url}/_control/references", timeout=5).json() == {"ref-9": 1}
    inbox = requests.get(f"{sim.url}/inbox/5511912345678", timeout=5).text
    assert "Olá Ana, pague R$ 49,00" in inbox


def test_template_lifecycle_over_the_graph_api(sim, hooks):
    url = f"{sim.url}/v21.0/{DEFAULT_WABA_ID}/message_templates"
    spec = {
        "name": "payment_failed_reminder_v1",
        "language": "en_US",
        "category": "UTILITY",
        "components": [{"type": "BODY", "text": "Hi {{1}}", "example": {"body_text": [["Ana"]]}}],
    }
    created = requests.post(url, json=spec, headers=HEADERS, timeout=5).json()
    assert created["status"] == "PENDING" and created["category"] == "UTILITY"
    bad = requests.post(url, json={**spec, "name": "Bad Name"}, headers=HEADERS, timeout=5)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == 100
    review = requests.post(
        f"{sim.url}/_control/templates/{created['id']}", json={"status": "REJECTED"}, timeout=5
    )
    assert review.json()["status"] == "REJECTED"
    [webhook] = hooks.wait_for("/wa", 1)
    change = webhook.json()["entry"][0]["changes"][0]
    assert change["field"] == "message_template_status_update" and change["value"]["event"] == "REJECTED"
    fetched = requests.get(f"{sim.url}/v21.0/{created['id']}", headers=HEADERS, timeout=5).json()
    assert fetched["status"] == "REJECTED"


def test_inbound_opens_the_window_and_statuses_follow(sim, hooks):
    r = requests.post(f"{sim.url}/_control/inbound", json={"from": "15551234567", "text": "hello"}, timeout=5)
    assert r.json()["status"] == 200
    text = {"messaging_product": "whatsapp", "to": "15551234567", "type": "text", "text": {"body": "hi"}}
    assert send(sim, text).status_code == 200
    hooks.wait_for("/wa", 3)
    sim.wait_for_webhooks(2)
    statuses = [
        s["status"]
        for post in hooks.received("/wa")
        for s in post.json()["entry"][0]["changes"][0]["value"].get("statuses", [])
    ]
    assert sorted(statuses) == ["delivered", "sent"]
    assert "hello" in requests.get(f"{sim.url}/inbox/15551234567", timeout=5).text
