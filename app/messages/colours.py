"""Brand colours made safe to use: normalised, and with text that stays readable on them (WCAG contrast)."""

from __future__ import annotations

import functools
import re

DEFAULT_COLOUR = "#1d4ed8"
COLOUR = re.compile(r"#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
DARK_TEXT = "#111827"


def normal_colour(text: str | None, default: str = DEFAULT_COLOUR) -> str:
    """``"#17C"`` -> ``"#1177cc"``; anything that is not a hex colour -> ``default`` (never raw text into CSS)."""
    if not text or not COLOUR.fullmatch(text.strip()):
        return default
    digits = text.strip().lstrip("#").lower()
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return f"#{digits}"


@functools.lru_cache(maxsize=64)  # pure; every branded email asks it of the same brand colour several times
def text_on(colour: str) -> str:
    """White or near-black, whichever reads better on ``colour`` (a button's label)."""
    return "#ffffff" if contrast(colour, "#ffffff") >= contrast(colour, DARK_TEXT) else DARK_TEXT


@functools.lru_cache(maxsize=64)
def ink_on_white(colour: str) -> str:
    """``colour`` darkened until it reads on white at WCAG AA (4.5:1): for links and outlines."""
    for _ in range(30):
        if contrast(colour, "#ffffff") >= 4.5:
            break
        r, g, b = _rgb(colour)
        colour = "#{:02x}{:02x}{:02x}".format(*(int(c * 0.85) for c in (r, g, b)))
    return colour


def contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _rgb(colour: str) -> tuple[int, int, int]:
    digits = normal_colour(colour)[1:]
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def _luminance(colour: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = _rgb(colour)
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)
