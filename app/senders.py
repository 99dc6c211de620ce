"""The channel senders this app is configured with (from the environment / config; the admin comes later)."""

from __future__ import annotations

from typing import Any

from flask import Flask

from app.channels.base import ChannelSender, ConfigurationError, OutboundMessage
from app.links import tracking_token


class ChannelNotConfigured(ConfigurationError):
    pass


def build_senders(app: Flask) -> dict[str, ChannelSender]:
    config = app.config
    base = config["PUBLIC_BASE_URL"].rstrip("/")
    secret = config["SECRET_KEY"]
    senders: dict[str, ChannelSender] = {}
    if config.get("SMTP_URL"):
        from app.channels.email import EmailSender

        def pixel(message: OutboundMessage) -> str | None:
            mid = _message_id(message.reference)
            return f"{base}/t/o/{tracking_token(secret, mid)}.gif" if mid else None

        def click(message: OutboundMessage, url: str) -> str | None:
            mid = _message_id(message.reference)
            return f"{base}/t/c/{tracking_token(secret, mid, url)}" if mid else None

        senders["email"] = EmailSender.from_url(
            config["SMTP_URL"], from_address=config["MAIL_FROM"], open_pixel=pixel, click_redirect=click
        )
    if config.get("TWILIO_ACCOUNT_SID") and config.get("TWILIO_AUTH_TOKEN") and config.get("TWILIO_FROM"):
        from app.channels.sms import TwilioSender

        source = config["TWILIO_FROM"]
        service = source if source.startswith("MG") else None
        senders["sms"] = TwilioSender(
            config["TWILIO_ACCOUNT_SID"],
            config["TWILIO_AUTH_TOKEN"],
            None if service else source,
            messaging_service_sid=service,
            api_url=config["TWILIO_API_URL"],
        )
    if config.get("WHATSAPP_TOKEN") and config.get("WHATSAPP_PHONE_NUMBER_ID"):
        from app.channels.whatsapp import WhatsAppSender

        senders["whatsapp"] = WhatsAppSender(
            config["WHATSAPP_TOKEN"], config["WHATSAPP_PHONE_NUMBER_ID"], api_url=config["WHATSAPP_API_URL"]
        )
    return senders


def senders_for(app: Flask) -> dict[str, ChannelSender]:
    cached: dict[str, Any] | None = app.extensions.get("recoup.senders")
    if cached is None:
        cached = build_senders(app)
        app.extensions["recoup.senders"] = cached
    return cached


def reset_senders(app: Flask) -> None:
    app.extensions.pop("recoup.senders", None)


def reference_for(message_id: int) -> str:
    return f"m{message_id}"


def _message_id(reference: str) -> int | None:
    if reference.startswith("m") and reference[1:].isdigit():
        return int(reference[1:])
    return None


message_id_from_reference = _message_id
