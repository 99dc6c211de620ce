"""The sandbox inboxes a person reads in the demo: links open the payment page in a new tab (never inside a
sandboxed frame, which the page's CSP refuses), and with an inbox file what they show outlives a restart."""

import re
import smtplib
import time
from email.message import EmailMessage
from html import unescape

import requests

from sandbox.smtp.server import SmtpSimulator
from sandbox.twilio.server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, TwilioSimulator
from sandbox.whatsapp.server import DEFAULT_PHONE_NUMBER_ID, DEFAULT_TOKEN, WhatsAppSimulator

PAY = "http://127.0.0.1:5000/pay/abc.DEF-123"
PIXEL = "http://127.0.0.1:5000/t/o/abc.gif"


def send_mail(sim, to="lucia@example.com"):
    mail = EmailMessage()
    mail["From"] = "billing@store.example"
    mail["To"] = to
    mail["Subject"] = "Tu pago de 49,00 € no se completó"
    mail["X-Recoup-Reference"] = "m1"
    mail.set_content(f"Hola Lucía, paga aquí: {PAY}")
    mail.add_alternative(f'<!DOCTYPE html><html><head><title>x</title></head><body><p>Hola Lucía</p>'
                         f'<a href="{PAY}">Pagar ahora</a><img src="{PIXEL}" alt=""></body></html>', subtype="html")
    with smtplib.SMTP(sim.host, sim.port, timeout=5) as client:
        client.send_message(mail)


def frame_of(page):
    [frame] = re.findall(r"<iframe[^>]*>", page)
    return frame


def test_an_emails_links_open_in_a_new_unsandboxed_tab(tmp_path):
    with SmtpSimulator() as sim:
        send_mail(sim)
        page = requests.get(f"{sim.control_url}/inbox/lucia@example.com", timeout=5).text
    frame = frame_of(page)
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in frame
    document = unescape(re.search(r'srcdoc="([^"]*)"', frame).group(1))
    assert document.startswith('<!DOCTYPE html><html><head><base target="_blank">')  # links leave the frame
    assert "allow-scripts" not in frame and "allow-same-origin" not in frame
    assert f'<a href="{PAY}" target="_blank" rel="noopener">{PAY}</a>' in page  # and are listed under it
    assert f'<a href="{PIXEL}"' not in page  # an image is not a link


def test_the_mail_inbox_survives_a_restart_and_a_reset_empties_it(tmp_path):
    kept = tmp_path / "smtp.jsonl"
    with SmtpSimulator(inbox_file=str(kept)) as sim:
        send_mail(sim)
        send_mail(sim, to="bo@example.com")
    with SmtpSimulator(inbox_file=str(kept)) as again:
        [mail] = again.received("lucia@example.com")
        assert mail["subject"] == "Tu pago de 49,00 € no se completó" and mail["reference"] == "m1"
        assert PAY in mail["text"] and again.count("m1") == 2
        assert "Pagar ahora" in requests.get(f"{again.control_url}/inbox/lucia@example.com", timeout=5).text
        send_mail(again)
        assert [m["index"] for m in again.received()] == [1, 2, 3]  # numbering goes on
        again.reset()
    with SmtpSimulator(inbox_file=str(kept)) as emptied:
        assert emptied.received() == []


def test_without_an_inbox_file_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with SmtpSimulator() as sim:
        send_mail(sim)
    assert list(tmp_path.iterdir()) == []


def sms(sim, body, to="+34612345678"):
    url = f"{sim.url}/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json"
    response = requests.post(url, data={"To": to, "From": "+15550001111", "Body": body},
                             auth=(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN), timeout=5)
    assert response.status_code == 201
    return response.json()["sid"]


def test_sms_links_are_clickable_and_the_thread_survives_a_restart(tmp_path):
    kept = tmp_path / "twilio.jsonl"
    with TwilioSimulator(delays=(0.01, 0.01), inbox_file=str(kept)) as sim:
        sid = sms(sim, f"Tienda: tu pago de 49,00 € falló. Paga aquí: {PAY}")
        sim.send_inbound("+34612345678", "STOP")
        assert sim.wait_for_callbacks(5)
    with TwilioSimulator(inbox_file=str(kept)) as again:
        assert again.messages[sid]["status"] == "delivered" and again.messages[sid]["date_sent"]
        assert "+34612345678" in again.opted_out
        page = requests.get(f"{again.url}/inbox/+34612345678", timeout=5).text
        assert f'Paga aquí: <a href="{PAY}" target="_blank" rel="noopener">{PAY}</a>' in page
        assert "STOP" in page and "delivered" in page
        again.reset()
    assert TwilioSimulator(inbox_file=str(kept)).messages == {}


def test_whatsapp_links_are_clickable_and_the_chat_survives_a_restart(tmp_path):
    kept = tmp_path / "whatsapp.jsonl"
    headers = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
    with WhatsAppSimulator(delays=(0.01, 0.01, 0.01), out_of_order=0, inbox_file=str(kept)) as sim:
        sim.send_inbound("34612345678", "hola")
        text = {"messaging_product": "whatsapp", "to": "34612345678", "type": "text",
                "text": {"body": f"Paga aquí: {PAY}."}}
        sent = requests.post(f"{sim.url}/v21.0/{DEFAULT_PHONE_NUMBER_ID}/messages", json=text, headers=headers,
                             timeout=5)
        wamid = sent.json()["messages"][0]["id"]
        assert sim.wait_for_webhooks(5)
    with WhatsAppSimulator(inbox_file=str(kept)) as again:
        assert again.messages[wamid]["status"] == "delivered"
        assert time.time() - again.last_inbound["34612345678"] < 60  # the 24-hour window is still open
        page = requests.get(f"{again.url}/inbox/34612345678", timeout=5).text
        assert f'<a href="{PAY}" target="_blank" rel="noopener">{PAY}</a>.' in page and "hola" in page
