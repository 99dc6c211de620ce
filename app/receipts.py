"""Receipt references a customer can read out to support: ``RC-7K3M-Q9X``.

Derived from the payment's id, so nothing is stored and support finds the payment from the reference alone
(:func:`payment_id_for_reference`). Crockford's base 32 (no I, L, O or U; read back, O is 0 and I or L is 1), the
id scrambled so consecutive payments do not look consecutive, and a last check character that catches nearly any
mistyped or swapped character. Six characters cover a billion payments; past that the reference grows by one.
"""

from __future__ import annotations

import re

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PREFIX = "RC"
_WIDTH = 6  # characters before the check character, at least
_MULTIPLIER = 0x2F6B_4E3D  # odd: a bijection modulo any power of two
_OFFSET = 0x1C3A_95E7
_READ_AS = {"O": "0", "I": "1", "L": "1"}
_SHAPE = re.compile(r"^\s*RC[-\s]?([0-9A-Z][0-9A-Z\s-]*)\s*$", re.I)


def receipt_reference(payment_id: int) -> str:
    """``receipt_reference(1) == "RC-XXXX-XXC"``: the payment's reference as printed on the receipt."""
    if payment_id < 1:
        raise ValueError("a payment id is positive")
    width = _WIDTH
    while payment_id >= 32**width:
        width += 1
    modulus = 32**width
    number = (payment_id * _MULTIPLIER + _OFFSET) % modulus
    digits = _encode(number, width)
    body = digits + ALPHABET[_check(digits)]
    return f"{PREFIX}-{body[:4]}-{body[4:]}"


def payment_id_for_reference(reference: str) -> int | None:
    """The payment id a reference stands for, however it was typed (case, spaces, dashes, O for 0); None if it is
    not one of ours or a character is wrong."""
    match = _SHAPE.match(reference or "")
    if match is None:
        return None
    body = "".join(_READ_AS.get(c, c) for c in match.group(1).upper() if c not in " -\t")
    if len(body) < _WIDTH + 1 or any(c not in ALPHABET for c in body):
        return None
    digits, check = body[:-1], body[-1]
    if ALPHABET[_check(digits)] != check:
        return None
    modulus = 32 ** len(digits)
    number = sum(ALPHABET.index(c) * 32**i for i, c in enumerate(reversed(digits)))
    payment_id = ((number - _OFFSET) * pow(_MULTIPLIER, -1, modulus)) % modulus
    if payment_id < 1 or (len(digits) > _WIDTH and payment_id < 32 ** (len(digits) - 1)):
        return None
    return payment_id


def _encode(number: int, width: int) -> str:
    out = []
    for _ in range(width):
        number, rest = divmod(number, 32)
        out.append(ALPHABET[rest])
    return "".join(reversed(out))


def _check(digits: str) -> int:
    """A weighted sum modulo 31 (prime): any one wrong character or two swapped neighbours changes it."""
    return sum((i + 1) * ALPHABET.index(c) for i, c in enumerate(digits)) % 31
