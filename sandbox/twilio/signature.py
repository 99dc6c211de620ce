"""How Twilio signs a webhook, written for the simulator alone (the client's check in ``app/`` is separate, so a
mistake in one is not agreed with by the other).

``X-Twilio-Signature`` = base64(HMAC-SHA1(auth token, the URL exactly as called + each POST parameter's name and
value, sorted by name)): https://www.twilio.com/docs/usage/webhooks/webhooks-security
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping


def sign(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    signed = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode("utf-8"), signed.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")
