"""Which simulators exist, and the fixed ports the demo runs them on (tests use free ports)."""

from __future__ import annotations

import importlib
from typing import Any

#: name -> (import path of the simulator class, the port `flask sandbox` / the demo gives it)
SIMULATORS: dict[str, tuple[str, int]] = {
    "nmi": ("sandbox.nmi.server:NmiSimulator", 8101),
    "twilio": ("sandbox.twilio.server:TwilioSimulator", 8102),
    "whatsapp": ("sandbox.whatsapp.server:WhatsAppSimulator", 8103),
    "smtp": ("sandbox.smtp.server:SmtpSimulator", 8125),
}


#: extra options when the simulators run on the demo's fixed ports (the SMTP simulator's inbox is HTTP)
DEMO_OPTIONS: dict[str, dict[str, Any]] = {"smtp": {"control_port": 8126}}


def load(name: str) -> Any:
    """The simulator class registered as ``name``."""
    target, _port = SIMULATORS[name]
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def demo_port(name: str) -> int:
    return SIMULATORS[name][1]
