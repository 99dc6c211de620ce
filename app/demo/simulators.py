"""Running the provider simulators (NMI, Twilio, WhatsApp, SMTP) from the app: for the demo and `flask sandbox`.

The simulators themselves live in ``sandbox/`` and know nothing of the app; this module only starts them on the
demo's fixed ports (or free ones) and keeps their access logs quiet.
"""

from __future__ import annotations

import logging
import os
from typing import Any


def start_simulators(
    names: list[str] | None = None, *, fixed_ports: bool = True, **options: dict[str, Any]
) -> dict[str, Any]:
    """Start the named simulators (all by default), each with its ``options[name]``; returns them by name."""
    from sandbox import registry

    running = {}
    for name in names or list(registry.SIMULATORS):
        cls = registry.load(name)
        port = registry.demo_port(name) if fixed_ports else 0
        extra = {**(registry.DEMO_OPTIONS.get(name, {}) if fixed_ports else {}), **options.get(name, {})}
        running[name] = cls(port=port, **extra).start()
    return running


def quiet_access_log() -> bool:
    """Silence werkzeug's line per request to the app, unless ``RECOUP_ACCESS_LOG=1``: a running demo makes
    thousands, and they bury its banner (the simulators' server writes none). Errors still show. True when
    silenced."""
    if os.environ.get("RECOUP_ACCESS_LOG", "").strip().lower() in {"1", "true", "yes", "on"}:
        return False
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    return True
