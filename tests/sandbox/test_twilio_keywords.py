"""The Twilio simulator's own opt-out keywords (Twilio's defaults), and the client honouring every one of them."""

import pytest

from app.channels.base import Keyword, detect_keyword
from sandbox.twilio import keywords


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ("STOP", "STOP"),
        ("stop", "STOP"),
        (" Unsubscribe! ", "STOP"),
        ("quit.", "STOP"),
        ("StopAll", "STOP"),
        ("START", "START"),
        ("yes", "START"),
        ("unstop", "START"),
        ("help", "HELP"),
        ("INFO", "HELP"),
        ("please stop", None),
        ("", None),
        (None, None),
    ],
)
def test_a_whole_message_is_a_keyword_in_any_case(body, kind):
    assert keywords.opt_out_type(body) == kind


def test_the_client_honours_every_word_twilio_acts_on():
    for words, kind in (
        (keywords.OPT_OUT, Keyword.STOP),
        (keywords.OPT_IN, Keyword.START),
        (keywords.HELP, Keyword.HELP),
    ):
        assert {word: detect_keyword(word.lower()) for word in words} == dict.fromkeys(words, kind)
