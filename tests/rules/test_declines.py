import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.declines import (
    MERCHANT_ADVICE_CODES,
    NMI_RESPONSE_CODES,
    DeclineInfo,
    DeclineKind,
    DeclineReason,
    classify_decline,
    documented_nmi_codes,
    is_retryable,
)

# The result code table NMI publishes (Payment API doc, "Result Code Table").
NMI_DOCUMENTED = {
    "100", "200", "201", "202", "203", "204", "220", "221", "222", "223", "224", "225", "226", "240",
    "250", "251", "252", "253", "260", "261", "262", "263", "264", "300", "301", "400", "410", "411",
    "420", "421", "430", "440", "441", "460", "461",
}  # fmt: skip


def test_the_table_covers_exactly_what_nmi_documents():
    assert documented_nmi_codes() == NMI_DOCUMENTED


@pytest.mark.parametrize("code", sorted(NMI_DOCUMENTED - {"100"}))
def test_every_documented_decline_code_has_a_reason(code, caplog):
    with caplog.at_level(logging.WARNING, logger="rules.declines"):
        info = classify_decline(code)
    assert info.reason is not DeclineReason.unknown
    assert info.code == code and not info.approved
    assert info.description == NMI_RESPONSE_CODES[code].description
    assert caplog.records == []


@pytest.mark.parametrize("code", [str(c) for c in [*range(200, 265), 300, 301, *range(400, 462)]])
def test_every_code_in_the_ranges_is_classified_never_dropped(code):
    info = classify_decline(code)
    assert isinstance(info, DeclineInfo)
    assert isinstance(info.reason, DeclineReason) and isinstance(info.kind, DeclineKind)
    assert info.code == code
    if code in NMI_DOCUMENTED:
        assert info.reason is not DeclineReason.unknown


def test_approval_is_marked_and_not_retryable():
    info = classify_decline("100")
    assert info.approved and info.description == "Transaction was approved"
    assert not is_retryable(info)


@pytest.mark.parametrize(
    ("code", "reason", "kind"),
    [
        ("202", DeclineReason.insufficient_funds, DeclineKind.soft),
        ("203", DeclineReason.insufficient_funds, DeclineKind.soft),
        ("201", DeclineReason.do_not_honor, DeclineKind.soft),
        ("223", DeclineReason.expired_card, DeclineKind.hard),
        ("225", DeclineReason.invalid_card_data, DeclineKind.hard),
        ("252", DeclineReason.lost_stolen_fraud, DeclineKind.hard),
        ("261", DeclineReason.stop_recurring, DeclineKind.stop),
        ("262", DeclineReason.stop_recurring, DeclineKind.stop),
        ("263", DeclineReason.updated_card_available, DeclineKind.hard),
        ("264", DeclineReason.retry_later, DeclineKind.soft),
        ("300", DeclineReason.gateway_error, DeclineKind.hard),
        ("301", DeclineReason.rate_limited, DeclineKind.soft),
        ("420", DeclineReason.issuer_unavailable, DeclineKind.soft),
        ("421", DeclineReason.issuer_unavailable, DeclineKind.soft),
        ("461", DeclineReason.invalid_card_data, DeclineKind.hard),
    ],
)
def test_key_codes(code, reason, kind):
    info = classify_decline(code)
    assert (info.reason, info.kind) == (reason, kind)
    assert is_retryable(info) == (kind is DeclineKind.soft)


@pytest.mark.parametrize("odd", [None, "", "   ", "abc", "999", "205", "-1", "2 02"])
def test_unknown_and_odd_input_is_unknown_and_logged(odd, caplog):
    with caplog.at_level(logging.WARNING, logger="rules.declines"):
        info = classify_decline(odd)
    assert info.reason is DeclineReason.unknown
    assert any("unknown decline code" in r.getMessage() for r in caplog.records)


def test_codes_are_normalised():
    assert classify_decline(" 0202 ").code == "202"
    assert classify_decline(" 0202 ").reason is DeclineReason.insufficient_funds


def test_unknown_code_kind_follows_its_family():
    assert classify_decline("299").kind is DeclineKind.soft
    assert classify_decline("499").kind is DeclineKind.hard


def test_text_refines_a_generic_decline():
    assert classify_decline("200", text="Insufficient funds").reason is DeclineReason.insufficient_funds
    assert classify_decline("260", text="Stop recurring payment").kind is DeclineKind.stop
    assert classify_decline("200", text="DECLINE").reason is DeclineReason.do_not_honor
    # a specific code is not overridden by a vague text
    assert classify_decline("223", text="Insufficient funds").reason is DeclineReason.expired_card


def test_text_classifies_an_unknown_code_but_still_logs(caplog):
    with caplog.at_level(logging.WARNING, logger="rules.declines"):
        info = classify_decline("299", text="Card reported stolen")
    assert info.reason is DeclineReason.lost_stolen_fraud
    assert caplog.records


def test_other_gateways_fall_back_to_text():
    info = classify_decline("card_declined", gateway="stripe", text="insufficient_funds")
    assert info.reason is DeclineReason.insufficient_funds


@pytest.mark.parametrize(
    ("mac", "reason", "kind", "after"),
    [
        ("01", DeclineReason.updated_card_available, DeclineKind.hard, None),
        ("1", DeclineReason.updated_card_available, DeclineKind.hard, None),
        ("02", DeclineReason.retry_later, DeclineKind.soft, None),
        ("03", DeclineReason.do_not_honor, DeclineKind.stop, None),
        ("21", DeclineReason.stop_recurring, DeclineKind.stop, None),
        ("04", DeclineReason.invalid_card_data, DeclineKind.hard, None),
        ("24", DeclineReason.retry_later, DeclineKind.soft, 3600),
        ("25", DeclineReason.retry_later, DeclineKind.soft, 86400),
        ("30", DeclineReason.retry_later, DeclineKind.soft, 10 * 86400),
        ("40", DeclineReason.do_not_honor, DeclineKind.hard, None),
    ],
)
def test_merchant_advice_codes_override(mac, reason, kind, after):
    info = classify_decline("201", mac)
    assert (info.reason, info.kind, info.retry_after_seconds) == (reason, kind, after)
    assert info.merchant_advice_code == mac.zfill(2)


def test_advice_03_keeps_a_specific_reason():
    info = classify_decline("252", "03")
    assert info.reason is DeclineReason.lost_stolen_fraud and info.kind is DeclineKind.stop
    assert not is_retryable(info)


def test_advice_refines_an_unknown_code():
    info = classify_decline("777", "03")
    assert info.kind is DeclineKind.stop and info.reason is DeclineReason.do_not_honor


def test_unknown_advice_is_ignored_and_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="rules.declines"):
        info = classify_decline("202", "99")
    assert info.reason is DeclineReason.insufficient_funds and info.merchant_advice_code == "99"
    assert any("merchant advice" in r.getMessage() for r in caplog.records)


def test_every_advice_code_has_a_description():
    assert all(entry.description for entry in MERCHANT_ADVICE_CODES.values())


def test_decline_info_is_frozen():
    info = classify_decline("202")
    with pytest.raises(AttributeError):
        info.reason = DeclineReason.unknown  # type: ignore[misc]


@given(
    code=st.one_of(st.none(), st.text(max_size=8)),
    mac=st.one_of(st.none(), st.text(max_size=4)),
    text=st.one_of(st.none(), st.text(max_size=40)),
)
def test_never_raises(code, mac, text):
    info = classify_decline(code, mac, text=text)
    assert isinstance(info.reason, DeclineReason) and isinstance(info.kind, DeclineKind)
