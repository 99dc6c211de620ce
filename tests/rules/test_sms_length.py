import pytest

from rules.sms_length import SmsEncoding, non_gsm7_characters, sms_segments

GSM, UCS2 = SmsEncoding.GSM7, SmsEncoding.UCS2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", (GSM, 1, 0)),
        ("a" * 160, (GSM, 1, 160)),
        ("a" * 161, (GSM, 2, 161)),
        ("a" * 306, (GSM, 2, 306)),
        ("a" * 307, (GSM, 3, 307)),
        ("€" * 80, (GSM, 1, 160)),  # extension characters cost two septets
        ("€" * 81, (GSM, 2, 162)),
        ("a" * 152 + "€" + "a" * 152, (GSM, 3, 306)),  # the escape pair is never split across segments
        ("Olá, sua fatura", (UCS2, 1, 15)),  # á is not GSM-7
        ("Hi Ana, é à ñ ü Ø", (GSM, 1, 17)),
        ("ć" * 70, (UCS2, 1, 70)),
        ("ć" * 71, (UCS2, 2, 71)),
        ("ć" * 134, (UCS2, 2, 134)),
        ("ć" * 135, (UCS2, 3, 135)),
        ("😀" * 35, (UCS2, 1, 70)),  # surrogate pairs: two UTF-16 units each
        ("😀" * 34 + "a" + "😀", (UCS2, 2, 71)),  # a pair is never split at the 67-unit boundary
        ("Your payment of 249,00\u00a0$ failed", (UCS2, 1, 31)),  # Babel's no-break space forces UCS-2
    ],
)
def test_segments(text, expected):
    assert tuple(sms_segments(text)) == expected


def test_the_characters_that_force_ucs2_are_named():
    assert non_gsm7_characters("Olá “Ana” á") == ["á", "“", "”"]
    assert non_gsm7_characters("plain {text}") == []
