"""Low findings of issue 15 that live in their own corners: SMTP on the submission port always upgrades to TLS, and
the unsubscribe link is not the open pixel's token (nor a click's)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.channels.base import Channel, ConfigurationError, OutboundMessage
from app.channels.email import EmailSender, SmtpSettings
from app.models import MessageEvent, OptOut
from app.payments.links import open_pixel_token, tracking_token, unsubscribe_token
from sandbox.smtp.server import SmtpSimulator
from tests.builders import make_message


# -- SMTP on port 587 ----------------------------------------------------------------------------------------------
def test_smtp_on_port_587_always_uses_starttls():
    settings = SmtpSettings.from_url("smtp://user:secret@mail.example.com:587")  # the admin form's own example
    assert (settings.port, settings.security) == (587, "starttls")


def test_smtp_on_port_587_without_starttls_is_refused():
    with pytest.raises(ConfigurationError, match="587"):
        SmtpSettings.from_url("smtp://user:secret@mail.example.com:587?starttls=false")
    with pytest.raises(ConfigurationError, match="587"):
        EmailSender("mail.example.com", 587, security="none")


def test_a_server_without_starttls_gets_no_message_and_no_password():
    """STARTTLS is not optional: a server that does not offer it (or a man in the middle who strips it) is not
    sent the message, nor the password, in plain text."""
    with SmtpSimulator(username="recoup", password="s3cret pass") as sim:
        sender = EmailSender("127.0.0.1", sim.port, username="recoup", password="s3cret pass", security="starttls",
                             backoff=0.01, max_attempts=1)
        result = sender.send(OutboundMessage(Channel.EMAIL, "ana@example.com", "msg-1", subject="s", text="t"))
        assert not result.accepted
        assert sim.received() == []


# -- unsubscribe and open pixel ---------------------------------------------------------------------------------------
def _opted_out(db, message) -> bool:  # type: ignore[no-untyped-def]
    return db.session.scalar(sa.select(OptOut.id).where(OptOut.customer_id == message.customer_id)) is not None


def test_the_open_pixel_token_does_not_unsubscribe(app, client, db):
    message = make_message(channel="email")
    db.session.commit()
    pixel = open_pixel_token(app.config["SECRET_KEY"], message.id)
    assert pixel != unsubscribe_token(app.config["SECRET_KEY"], message.id)
    assert client.get(f"/t/o/{pixel}.gif").status_code == 200
    assert client.post(f"/t/u/{pixel}", data="List-Unsubscribe=One-Click").status_code == 404
    assert not _opted_out(db, message)


def test_a_click_token_does_not_unsubscribe(app, client, db):
    message = make_message(channel="email")
    db.session.commit()
    click = tracking_token(app.config["SECRET_KEY"], message.id, "https://shop.example/")
    assert client.post(f"/t/u/{click}", data="List-Unsubscribe=One-Click").status_code == 404
    assert not _opted_out(db, message)


def test_the_unsubscribe_link_records_no_open(app, client, db):
    message = make_message(channel="email")
    db.session.commit()
    token = unsubscribe_token(app.config["SECRET_KEY"], message.id)
    assert client.get(f"/t/o/{token}.gif").status_code == 200  # always the pixel
    kinds = db.session.scalars(sa.select(MessageEvent.kind).where(MessageEvent.message_id == message.id)).all()
    assert "opened" not in kinds
    assert client.post(f"/t/u/{token}", data="List-Unsubscribe=One-Click").status_code == 200
    assert _opted_out(db, message)


def test_the_pixel_the_sender_puts_in_an_email_is_an_open_pixel_token(app, db):
    from app.outbox.senders import _tracking, reference_for

    message = make_message(channel="email")
    db.session.commit()
    pixel, _ = _tracking(app)
    url = pixel(OutboundMessage(Channel.EMAIL, "ana@example.com", reference_for(message.id), subject="s", text="t"))
    token = url.rsplit("/", 1)[1].removesuffix(".gif")
    assert token == open_pixel_token(app.config["SECRET_KEY"], message.id)
