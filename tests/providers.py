"""Starting the channel simulators and pointing an app's real clients at them."""

from __future__ import annotations

from app.messages.default_templates import whatsapp_approved_templates
from sandbox.smtp.server import SmtpSimulator
from sandbox.twilio.server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, DEFAULT_FROM, TwilioSimulator
from sandbox.whatsapp.server import (
    DEFAULT_APP_SECRET,
    DEFAULT_PHONE_NUMBER_ID,
    DEFAULT_TOKEN,
    WhatsAppSimulator,
)

WHATSAPP_TEMPLATES = whatsapp_approved_templates()


class ChannelSimulators:
    def __init__(self) -> None:
        self.smtp = SmtpSimulator()
        self.twilio = TwilioSimulator(delays=(0.01, 0.02))
        self.whatsapp = WhatsAppSimulator(templates=WHATSAPP_TEMPLATES, delays=(0.01, 0.02, 0.03), out_of_order=0)

    def start(self) -> ChannelSimulators:
        for sim in (self.smtp, self.twilio, self.whatsapp):
            sim.start()
        return self

    def stop(self) -> None:
        for sim in (self.smtp, self.twilio, self.whatsapp):
            sim.stop()

    def reset(self) -> None:
        for sim in (self.smtp, self.twilio, self.whatsapp):
            sim.reset()

    def configure(self, app, public_url: str | None = None) -> None:  # type: ignore[no-untyped-def]
        from app.outbox.senders import reset_senders

        app.config.update(
            SMTP_URL=self.smtp.url,
            TWILIO_ACCOUNT_SID=DEFAULT_ACCOUNT_SID,
            TWILIO_AUTH_TOKEN=DEFAULT_AUTH_TOKEN,
            TWILIO_FROM=DEFAULT_FROM,
            TWILIO_API_URL=self.twilio.url,
            WHATSAPP_TOKEN=DEFAULT_TOKEN,
            WHATSAPP_PHONE_NUMBER_ID=DEFAULT_PHONE_NUMBER_ID,
            WHATSAPP_APP_SECRET=DEFAULT_APP_SECRET,
            WHATSAPP_API_URL=self.whatsapp.url + "/v21.0",
        )
        if public_url:
            app.config["PUBLIC_BASE_URL"] = public_url
        reset_senders(app)
