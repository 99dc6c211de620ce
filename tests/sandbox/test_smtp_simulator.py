import smtplib
from email.message import EmailMessage

import pytest
import requests

from sandbox.registry import load
from sandbox.smtp.server import SmtpSimulator


@pytest.fixture(scope="module")
def _sim():
    cls = load("smtp")
    assert cls is SmtpSimulator
    with cls(host="127.0.0.1", port=0, username="u", password="p") as sim:
        yield sim


@pytest.fixture
def sim(_sim):
    _sim.reset()
    yield _sim


def message(to="ana@example.com", subject="Hello"):
    mail = EmailMessage()
    mail["From"] = "billing@acme.example"
    mail["To"] = to
    mail["Subject"] = subject
    mail["X-Recoup-Reference"] = "ref-1"
    mail.set_content("plain body")
    mail.add_alternative("<p>html body</p>", subtype="html")
    return mail


def test_interface_and_urls(sim):
    assert sim.port > 0 and sim.control_port > 0 and sim.port != sim.control_port
    assert sim.url == f"smtp://u:p@127.0.0.1:{sim.port}"
    assert sim.control_url == f"http://127.0.0.1:{sim.control_port}"


def test_auth_is_required_and_checked(sim):
    with smtplib.SMTP(sim.host, sim.port, timeout=5) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.send_message(message())
        assert refused.value.smtp_code == 530
    with smtplib.SMTP(sim.host, sim.port, timeout=5) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("u", "wrong")


def test_messages_are_kept_parsed_and_listed(sim):
    with smtplib.SMTP(sim.host, sim.port, timeout=5) as client:
        client.login("u", "p")
        client.send_message(message())
    listed = requests.get(
        f"{sim.control_url}/_control/messages", params={"to": "ana@example.com"}, timeout=5
    ).json()
    [received] = listed
    assert received["subject"] == "Hello" and received["text"] == "plain body\n"
    assert received["html"] == "<p>html body</p>\n" and received["reference"] == "ref-1"
    assert requests.get(f"{sim.control_url}/_control/references", timeout=5).json() == {"ref-1": 1}
    inbox = requests.get(f"{sim.control_url}/inbox/ana@example.com", timeout=5)
    assert inbox.status_code == 200 and "Hello" in inbox.text and "html body" in inbox.text
    assert "ana@example.com" in requests.get(f"{sim.control_url}/inbox", timeout=5).text
    assert requests.post(f"{sim.control_url}/_control/reset", timeout=5).status_code == 200
    assert sim.received() == []


def test_faults_through_the_control_api(sim):
    armed = requests.post(
        f"{sim.control_url}/_control/faults", json={"kind": "rcpt_550", "path": "gone@example.com"}, timeout=5
    )
    assert armed.status_code == 201
    with smtplib.SMTP(sim.host, sim.port, timeout=5) as client:
        client.login("u", "p")
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.send_message(message(to="gone@example.com"))
        assert refused.value.recipients["gone@example.com"][0] == 550
        client.send_message(message(to="fine@example.com"))
    assert [m["rcpt_tos"] for m in sim.received()] == [["fine@example.com"]]
    with pytest.raises(ValueError):
        sim.inject("smtp_999")


def test_without_credentials_no_auth_is_needed():
    with SmtpSimulator() as open_sim:
        assert open_sim.url == f"smtp://127.0.0.1:{open_sim.port}"
        with smtplib.SMTP(open_sim.host, open_sim.port, timeout=5) as client:
            client.send_message(message())
        assert len(open_sim.received()) == 1
