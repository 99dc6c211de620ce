"""The streaming Query API parser on its own: quirks, hostile input, memory."""

import tracemalloc

import pytest

from app.gateways.nmi_xml import (
    HostileXmlError,
    MalformedXmlError,
    NmiErrorResponse,
    TruncatedXmlError,
    XmlGuard,
    iter_records,
)
from sandbox.nmi import xml_writer
from sandbox.nmi.server import NmiSimulator

HEAD = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def chunked(data: bytes, size: int):
    return [data[i : i + size] for i in range(0, len(data), size)]


def parse(data: bytes, size: int = 7, **kw):
    return list(iter_records(chunked(data, size), **kw))


@pytest.fixture(scope="module")
def population():
    sim = NmiSimulator(seed=3)
    sim.seed_population(failed=30, succeeded=30)
    return sim.transactions


def test_repeated_actions_products_and_underscored_address_fields(population):
    settled = next(t for t in population if len(t.actions) >= 2)
    doc = b"".join(xml_writer.render_document([settled]))
    [record] = parse(doc, size=5)
    assert [a["action_type"] for a in record.actions] == [a.action_type for a in settled.actions]
    assert len(record.products) == len(settled.products)
    assert record.get("address_1") == settled.customer.address_1
    assert record.get("postal_code") == settled.customer.postal_code
    assert record.get("transaction_id") == settled.transaction_id


@pytest.mark.parametrize(
    "doc",
    [
        HEAD + b"<nm_response></nm_response>",
        HEAD + b"<nm_response/>",
        b"<nm_response>\n</nm_response>\n",
    ],
)
def test_empty_root_is_no_rows(doc):
    assert parse(doc) == []


def test_missing_optional_elements_are_none():
    doc = (
        HEAD
        + b"<nm_response><transaction><transaction_id>1</transaction_id><customerid/></transaction>"
        + b"</nm_response>"
    )
    [record] = parse(doc)
    assert record.get("customerid") is None and record.get("email") is None


def test_error_response_is_raised_with_its_text():
    with pytest.raises(NmiErrorResponse, match="Authentication Failed"):
        parse(xml_writer.error_document("Authentication Failed"))


def test_truncated_document(population):
    doc = b"".join(xml_writer.truncated_document(population))
    with pytest.raises(TruncatedXmlError):
        parse(doc, size=4096)


def test_empty_body_is_truncated():
    with pytest.raises(TruncatedXmlError):
        parse(b"")


def test_malformed_document(population):
    doc = b"".join(xml_writer.malformed_document(population))
    with pytest.raises(MalformedXmlError):
        parse(doc, size=4096)


def test_other_root_is_malformed():
    with pytest.raises(MalformedXmlError):
        parse(HEAD + b"<html><transaction><transaction_id>1</transaction_id></transaction></html>")


def test_entity_bomb_is_refused_before_expansion():
    with pytest.raises(HostileXmlError):
        parse(xml_writer.entity_bomb_document(), size=3)


@pytest.mark.parametrize(
    "doc",
    [
        HEAD + b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><nm_response>&e;</nm_response>',
        HEAD + b'<!DOCTYPE nm_response SYSTEM "http://example.com/x.dtd"><nm_response/>',
        b'<?xml version="1.0" encoding="UTF-16"?><nm_response/>' + b" " * 64,
        "<nm_response/>".encode("utf-16"),
    ],
)
def test_dtds_external_entities_and_foreign_encodings_are_refused(doc):
    with pytest.raises(HostileXmlError):
        parse(doc, size=2)


def test_undefined_entity_is_malformed_not_expanded():
    with pytest.raises(MalformedXmlError):
        parse(HEAD + b"<nm_response><transaction><x>&nope;</x></transaction></nm_response>", size=1000)


@pytest.mark.parametrize("size", [1, 13, 4096, 65536])
def test_huge_text_is_capped_and_the_rest_of_the_page_survives(population, size):
    chunks = xml_writer.huge_text_document(population[:3], size=300_000, chunk_bytes=4096)
    records = list(
        iter_records((c[i : i + size] for c in chunks for i in range(0, len(c), size)), max_text=1024)
    )
    assert [r.get("transaction_id") for r in records] == [t.transaction_id for t in population[:3]]
    description = records[0].fields["order_description"]
    assert description.startswith("Lorem ipsum") and 800 <= len(description.encode()) <= 1024 + 12
    assert records[1].get("order_description") == population[1].order_description


def test_cut_never_splits_a_multibyte_character_or_an_entity():
    text = ("é&amp;ü" * 400).encode()
    doc = HEAD + b"<nm_response><transaction><transaction_id>1</transaction_id><order_description>"
    doc += text + b"</order_description></transaction></nm_response>"
    for size in (1, 2, 3, 5, 64, 100000):
        [record] = parse(doc, size=size, max_text=101)
        value = record.fields["order_description"]
        assert ("é&ü" * 400).startswith(value) and len(value) >= 30


def test_overlong_markup_is_hostile():
    doc = HEAD + b"<nm_response><transaction " + b"a" * 5000 + b'="1"></transaction></nm_response>'
    with pytest.raises(HostileXmlError):
        parse(doc, size=100, max_text=1024)


def test_guard_passes_ordinary_documents_unchanged(population):
    doc = b"".join(xml_writer.render_document(population))
    guard = XmlGuard(max_text=1024)
    out = b"".join(guard.feed(c) for c in chunked(doc, 777)) + guard.close()
    assert out == doc and guard.truncated_texts == 0


def test_memory_stays_flat_however_many_records(population):
    def peak(n):
        many = (population[i % len(population)] for i in range(n))
        tracemalloc.start()
        try:
            count = sum(1 for _ in iter_records(xml_writer.render_document(many)))
            return count, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small_count, small_peak = peak(200)
    big_count, big_peak = peak(4000)
    assert (small_count, big_count) == (200, 4000)
    assert big_peak < small_peak * 1.5 + 256 * 1024
