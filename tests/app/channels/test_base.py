from app.channels.base import (
    Channel,
    ChannelSender,
    DeliveryStatus,
    Keyword,
    SendResult,
    detect_keyword,
)
from app.channels.email import EmailSender
from app.channels.sms import TwilioSender
from app.channels.whatsapp import WhatsAppSender


def test_every_sender_speaks_the_channel_interface():
    senders = [
        EmailSender("127.0.0.1"),
        TwilioSender("AC1", "t", "+15550001111"),
        WhatsAppSender("t", "1"),
    ]
    assert [s.channel for s in senders] == [Channel.EMAIL, Channel.SMS, Channel.WHATSAPP]
    assert all(isinstance(s, ChannelSender) for s in senders)


def test_furthest_status_wins_whatever_the_arrival_order():
    assert DeliveryStatus.READ.supersedes(DeliveryStatus.DELIVERED)
    assert not DeliveryStatus.DELIVERED.supersedes(DeliveryStatus.READ)
    assert not DeliveryStatus.FAILED.supersedes("delivered")
    assert DeliveryStatus.FAILED.supersedes(DeliveryStatus.SENT)
    assert DeliveryStatus.SENT.supersedes(None)


def test_outcomes():
    assert SendResult(accepted=True).outcome == "accepted"
    assert SendResult(accepted=False, unknown=True).outcome == "unknown"
    assert SendResult(accepted=False, permanent=True, opted_out=True).outcome == "permanent"
    assert SendResult(accepted=False, retryable=True).outcome == "retryable"
    assert SendResult(accepted=False).outcome == "error"


def test_keywords_match_the_whole_message_only():
    assert detect_keyword("Stop.") is Keyword.STOP
    assert detect_keyword("optout") is Keyword.STOP
    assert detect_keyword("revoke") is Keyword.STOP
    assert detect_keyword("stop it") is None
    assert detect_keyword(None) is None
