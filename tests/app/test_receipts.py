"""Receipt references: short, readable, unambiguous, and back to the payment from the reference alone."""

from __future__ import annotations

import re

import pytest

from app.payments.receipts import ALPHABET, payment_id_for_reference, receipt_reference

SHAPE = re.compile(r"RC-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{3,}")


@pytest.mark.parametrize("payment_id", [1, 2, 31, 32, 999, 123_456, 32**6 - 1, 32**6, 10**12])
def test_a_reference_reads_back_to_its_payment(payment_id):
    reference = receipt_reference(payment_id)
    assert SHAPE.fullmatch(reference) and not set(reference[3:].replace("-", "")) & set("ILOU")
    assert payment_id_for_reference(reference) == payment_id
    typed = reference.lower().replace("-", " ").replace("0", "o").replace("1", "l")  # read out over the phone
    assert payment_id_for_reference(typed) == payment_id


def test_consecutive_payments_do_not_look_consecutive_and_the_short_ones_have_eleven_characters():
    references = [receipt_reference(n) for n in range(1, 200)]
    assert len(set(references)) == 199 and all(len(r) == 11 for r in references)
    assert sum(a[3:5] == b[3:5] for a, b in zip(references, references[1:], strict=False)) < 20


def test_a_mistyped_or_swapped_character_is_caught():
    reference = receipt_reference(4321)
    body = reference.replace("RC-", "").replace("-", "")
    for i, c in enumerate(body):
        for other in ALPHABET:
            if other != c and abs(ALPHABET.index(other) - ALPHABET.index(c)) != 31:
                typo = body[:i] + other + body[i + 1:]
                assert payment_id_for_reference("RC-" + typo) is None
    for i in range(len(body) - 1):
        if body[i] != body[i + 1]:
            swapped = body[:i] + body[i + 1] + body[i] + body[i + 2:]
            assert payment_id_for_reference("RC-" + swapped) is None


@pytest.mark.parametrize("text", ["", "RC-", "XX-1234-567", "RC-12", "RC-UUUU-UUU", "rc#1234567"])
def test_what_is_not_a_reference_is_none(text):
    assert payment_id_for_reference(text) is None
