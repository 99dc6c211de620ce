"""Twilio's default opt-out keywords, written for the simulator alone (the client's list in ``app/`` is separate, so
a word one of them forgets is not agreed with by the other).

Twilio matches the whole message, any case, and replies on the number's behalf: an opt-out word stops all
messages to the sender, an opt-in word resumes them, and the inbound webhook says which with ``OptOutType``.
"""

from __future__ import annotations

OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN = frozenset({"START", "YES", "UNSTOP"})
HELP = frozenset({"HELP", "INFO"})


def opt_out_type(body: str | None) -> str | None:
    """``STOP``, ``START`` or ``HELP`` when the whole message is one of that kind's words, else None."""
    word = (body or "").strip().strip(".!").strip().upper()
    for kind, words in (("STOP", OPT_OUT), ("START", OPT_IN), ("HELP", HELP)):
        if word in words:
            return kind
    return None
