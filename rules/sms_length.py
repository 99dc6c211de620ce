"""How long an SMS is on the wire: GSM-7 or UCS-2, and how many segments a carrier bills.

A message that fits the GSM 03.38 default alphabet (plus its extension table) is sent in 7-bit septets: 160
in a single message, 153 per segment once it is split (the user data header takes the rest). One character
outside that alphabet (an emoji, a curly quote, "ç" is fine but "ć" is not) turns the whole message into
UCS-2: 70 UTF-16 code units alone, 67 per segment. Extension characters (``€ [ ] { } \\ ~ ^ |`` and form
feed) cost two septets, and a segment never ends between the escape and its character; likewise a UCS-2
segment never splits a surrogate pair. That packing rule is why the count is computed by filling segments
rather than by dividing.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE = 160
GSM7_MULTI = 153
UCS2_SINGLE = 70
UCS2_MULTI = 67


class SmsEncoding(StrEnum):
    GSM7 = "GSM-7"
    UCS2 = "UCS-2"


class SmsLength(NamedTuple):
    """``encoding``, billed ``segments``, and ``length`` in septets (GSM-7) or UTF-16 code units (UCS-2)."""

    encoding: SmsEncoding
    segments: int
    length: int


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def _units(text: str, encoding: SmsEncoding) -> list[int]:
    """The cost of each character, which is also the unit that must not be split."""
    if encoding is SmsEncoding.GSM7:
        return [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def _pack(units: list[int], capacity: int) -> int:
    segments, used = 1, 0
    for cost in units:
        if used + cost > capacity:
            segments += 1
            used = 0
        used += cost
    return segments


def sms_segments(text: str) -> SmsLength:
    """Encoding, segment count and length of ``text``; an empty message still takes one segment."""
    encoding = SmsEncoding.GSM7 if is_gsm7(text) else SmsEncoding.UCS2
    units = _units(text, encoding)
    length = sum(units)
    single, multi = (GSM7_SINGLE, GSM7_MULTI) if encoding is SmsEncoding.GSM7 else (UCS2_SINGLE, UCS2_MULTI)
    segments = 1 if length <= single else _pack(units, multi)
    return SmsLength(encoding, segments, length)


def non_gsm7_characters(text: str) -> list[str]:
    """The characters that force UCS-2, in order of first appearance (to show an editor what to change)."""
    seen: list[str] = []
    for ch in text:
        if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION and ch not in seen:
            seen.append(ch)
    return seen
