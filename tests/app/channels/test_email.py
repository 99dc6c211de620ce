from email import message_from_bytes, policy

import pytest

from app.channels.base import Channel, ConfigurationError, InvalidMessageError, OutboundMessage
from app.channels.email import (
    MESSAGE_POLICY,
    EmailSender,
    SmtpSettings,
    add_open_pixel,
    build_email_message,
    inline_css,
    list_unsubscribe_headers,
    make_message_id,
    rewrite_links,
)
from sandbox.smtp.server import SmtpSimulator

FROM = "Acme Billing <billing@acme.example>"


@pytest.fixture(scope="module")
def _smtp():
    with SmtpSimulator(username="recoup", password="s3cret pass") as sim:
        yield sim


@pytest.fixture
def smtp(_smtp):
    _smtp.reset()
    yield _smtp


def email(to="ana@example.com", ref="msg-1", **fields):
    fields.setdefault("subject", "Your payment did not go through")
    fields.setdefault("text", "Hi Ana, please update your card: https://pay.example.com/p/tok")
    return OutboundMessage(Channel.EMAIL, to, ref, **fields)


def sender_for(sim, **options):
    options.setdefault("backoff", 0.01)
    return EmailSender.from_url(sim.url, from_address=FROM, **options)


# -- settings ------------------------------------------------------------------------------------------------
def test_smtp_url_forms():
    plain = SmtpSettings.from_url("smtp://user:p%40ss@mail.example.com:2525")
    assert (plain.host, plain.port, plain.username, plain.password, plain.security) == (
        "mail.example.com",
        2525,
        "user",
        "p@ss",
        "none",
    )
    assert SmtpSettings.from_url("smtps://u:p@mail.example.com").port == 465
    assert SmtpSettings.from_url("smtps://u:p@mail.example.com").security == "ssl"
    starttls = SmtpSettings.from_url("smtp://u:p@mail.example.com?starttls=true")
    assert (starttls.security, starttls.port) == ("starttls", 587)
    assert SmtpSettings.from_url("smtp+starttls://h").security == "starttls"
    with pytest.raises(ConfigurationError):
        SmtpSettings.from_url("http://mail.example.com")
    with pytest.raises(ConfigurationError):
        EmailSender.from_env({})


# -- building ------------------------------------------------------------------------------------------------
def test_rfc8058_headers_reference_and_message_id():
    message = email(
        html="<p>Hi</p>",
        unsubscribe_url="https://pay.example.com/u/tok123",
        unsubscribe_mailto="unsubscribe@acme.example?subject=unsub-tok123",
    )
    built = build_email_message(message, from_address=FROM)
    assert built["List-Unsubscribe"] == (
        "<https://pay.example.com/u/tok123>, <mailto:unsubscribe@acme.example?subject=unsub-tok123>"
    )
    assert built["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert built["X-Recoup-Reference"] == "msg-1"
    assert built["Message-ID"].startswith("<recoup.msg-1.") and built["Message-ID"].endswith("@acme.example>")
    assert built.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in built.iter_parts()] == ["text/plain", "text/html"]


def test_messages_are_what_the_stdlib_would_write_though_repeating_headers_are_parsed_once():
    sender = "Café Ñandú <billing@acme.example>"
    for ref in ("m-1", "m-2"):  # the second message shares the first's parsed From and MIME headers
        message = email(ref=ref, subject="Tu pago de 10,00 € no se completó", html="<p>Hola Ana, ñ</p>",
                        unsubscribe_url=f"https://pay.example.com/u/{ref}")
        raw = build_email_message(message, from_address=sender).as_bytes(policy=MESSAGE_POLICY)
        head = raw.split(b"\r\n\r\n")[0]
        assert head.isascii() and b"From: =?utf-8?b?Q2Fmw6kgw5FhbmTDug==?= <billing@acme.example>" in head
        assert f"X-Recoup-Reference: {ref}".encode() in head
        assert message_from_bytes(raw, policy=policy.SMTP).as_bytes(policy=policy.SMTP) == raw
        parsed = message_from_bytes(raw, policy=policy.default)
        assert parsed["Subject"] == "Tu pago de 10,00 € no se completó"
        assert parsed.get_body(("html",)).get_content().strip() == "<p>Hola Ana, ñ</p>"


def test_no_one_click_header_without_an_https_url():
    assert list_unsubscribe_headers(None, "u@acme.example") == {"List-Unsubscribe": "<mailto:u@acme.example>"}
    with pytest.raises(InvalidMessageError):
        list_unsubscribe_headers("javascript:alert(1)", None)


@pytest.mark.parametrize("url", ["http://pay.example.com/t/u/tok", "http://10.0.0.5/t/u/tok", "ftp://pay.example.com/u"])
def test_one_click_unsubscribe_needs_https_off_loopback(url):
    """Issue 16, point 5: RFC 8058 one-click needs HTTPS; plain http only on loopback (the sandbox and the demo)."""
    with pytest.raises(InvalidMessageError, match="must be https"):
        list_unsubscribe_headers(url, None)


@pytest.mark.parametrize("url", ["https://pay.example.com/t/u/tok", "http://127.0.0.1:5000/t/u/tok",
                                 "http://localhost/t/u/tok", "http://[::1]:8080/t/u/tok"])
def test_one_click_unsubscribe_over_https_or_on_loopback(url):
    headers = list_unsubscribe_headers(url, None)
    assert headers == {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def test_a_message_id_given_by_the_caller_is_kept():
    kept = make_message_id("m-5", FROM)
    built = build_email_message(email(headers={"Message-ID": kept}), from_address=FROM)
    assert built["Message-ID"] == kept


def test_css_is_inlined_with_specificity_and_the_rest_kept():
    html = (
        "<html><head><style>p{color:red;margin:0} .note{color:green} p.note{font-weight:bold}"
        " #total{color:blue !important} a:hover{color:red}"
        " @media (max-width:600px){p{font-size:12px}}</style></head><body><p>a</p>"
        "<p class='note' style='color:black'>b</p><p id=total style='color:black'>c</p></body></html>"
    )
    out = inline_css(html)
    assert '<p style="color: red; margin: 0">a</p>' in out
    assert '<p class="note" style="color: black; margin: 0; font-weight: bold">b</p>' in out
    assert '<p id="total" style="color: blue; margin: 0">c</p>' in out
    assert "<style>a:hover{color:red}\n@media (max-width:600px){p{font-size:12px}}</style>" in out


def test_tracking_helpers():
    html = (
        '<html><body><a href="https://pay.example.com/p/x?a=1&amp;b=2">Pay</a>'
        ' <a href="mailto:h@x">m</a></body></html>'
    )
    seen = []
    rewritten = rewrite_links(html, lambda url: seen.append(url) or f"https://t.example.com/t/c/{len(seen)}")
    assert seen == ["https://pay.example.com/p/x?a=1&b=2"]
    assert 'href="https://t.example.com/t/c/1"' in rewritten and 'href="mailto:h@x"' in rewritten
    pixel = add_open_pixel(rewritten, "https://t.example.com/t/o/tok.gif")
    assert pixel.endswith(
        '<img src="https://t.example.com/t/o/tok.gif" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px" /></body></html>'
    )


def test_sender_applies_click_redirects_and_the_pixel():
    sender = EmailSender(
        "127.0.0.1",
        open_pixel=lambda m: f"https://t.example.com/t/o/{m.reference}.gif",
        click_redirect=lambda m, url: f"https://t.example.com/t/c/{m.reference}",
    )
    built = sender.build(email(html='<p><a href="https://pay.example.com/p/x">Pay</a></p>'))
    html = built.get_body(("html",)).get_content()
    assert 'href="https://t.example.com/t/c/msg-1"' in html and "t/o/msg-1.gif" in html


# -- sending -------------------------------------------------------------------------------------------------
def test_send_delivers_a_multipart_message_with_auth(smtp):
    message = email(
        html="<html><head><style>p{color:#333}</style></head><body><p>Hi Ana</p></body></html>",
        unsubscribe_url="https://pay.example.com/u/tok",
    )
    result = sender_for(smtp).send(message)
    assert result.accepted and result.provider_message_id.startswith("<recoup.msg-1.")
    [received] = smtp.received("ana@example.com")
    assert received["message_id"] == result.provider_message_id
    assert received["reference"] == "msg-1" and received["authenticated"]
    assert received["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
    assert '<p style="color: #333">Hi Ana</p>' in received["html"]
    assert received["text"].startswith("Hi Ana, please update your card")
    assert received["mail_from"] == "billing@acme.example"


def test_wrong_password_is_an_error_not_a_bounce(smtp):
    result = EmailSender(smtp.host, smtp.port, username="recoup", password="wrong").send(email())
    assert result.error_code == "auth" and result.outcome == "error"
    assert smtp.received() == []


def test_hard_bounce_at_rcpt_is_permanent(smtp):
    smtp.inject("rcpt_550", path="gone@example.com")
    result = sender_for(smtp).send(email(to="gone@example.com"))
    assert result.permanent and result.error_code == "550" and "User unknown" in result.error_text


def test_temporary_failures_are_retried(smtp):
    smtp.inject("data_451", count=1)
    smtp.inject("rcpt_451", count=1)
    result = sender_for(smtp).send(email(ref="r-451"))
    assert result.accepted and result.attempts == 3 and smtp.count("r-451") == 1


def test_temporary_failures_that_persist_are_retryable(smtp):
    smtp.inject("mail_421", count=5)
    result = sender_for(smtp, max_attempts=2).send(email())
    assert result.retryable and result.attempts == 2 and smtp.received() == []


def test_connection_lost_after_data_is_unknown_and_not_resent(smtp):
    smtp.inject("drop_after_data", count=1)
    result = sender_for(smtp).send(email(ref="r-drop"))
    assert result.unknown and result.outcome == "unknown" and result.attempts == 1
    assert smtp.count("r-drop") == 1


def test_any_connection_lost_during_data_is_never_resent(smtp):
    smtp.inject("drop_before_data", count=1)
    result = sender_for(smtp).send(email(ref="r-drop-early"))
    assert result.unknown  # the client cannot tell the two drops apart, so it never risks a duplicate
    assert smtp.count("r-drop-early") == 0


def test_one_click_unsubscribe_posts_what_rfc_8058_says(smtp, receiver):
    url = f"{receiver.url}/u/tok-abc"
    sender_for(smtp).send(email(unsubscribe_url=url))
    [received] = smtp.received()
    outcome = smtp.one_click_unsubscribe(index=received["index"])
    assert outcome["status"] == 200
    [post] = receiver.received("/u/tok-abc")
    assert post.method == "POST" and post.body == b"List-Unsubscribe=One-Click"
    assert post.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "Cookie" not in post.headers and "Authorization" not in post.headers


def test_unreachable_server_is_retryable():
    result = EmailSender("127.0.0.1", 9, max_attempts=2, backoff=0.01).send(email())
    assert result.retryable and result.attempts == 2
