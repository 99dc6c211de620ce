"""How Meta signs a WhatsApp Cloud API webhook, written for the simulator alone (the client's check in ``app/`` is
separate, so a mistake in one is not agreed with by the other).

``X-Hub-Signature-256`` = ``sha256=`` + the hex HMAC-SHA256 of the raw request body, keyed with the app secret.
"""

from __future__ import annotations

import hashlib
import hmac


def sign(app_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
